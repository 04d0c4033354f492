"""Training: stage 1 pre-training, stages 2-3 and the baselines, all on one loop.

Public entry points (one per stage, each with a frozen config dataclass):
:func:`pipeline.train.pretrain.pretrain` and :func:`pipeline.train.supervised.train_supervised`.
"""

from pipeline.losses.masked_bce import masked_bce
from pipeline.tracking import TrackingConfig
from pipeline.train.engine import TrainConfig, fit
from pipeline.train.pretrain import PretrainConfig, PretrainInputs, PretrainResult, pretrain
from pipeline.train.stage import StageRuntime
from pipeline.train.supervised import (
    StageConfig,
    SupervisedInputs,
    SupervisedResult,
    predict_model,
    train_supervised,
)

__all__ = [
    "PretrainConfig",
    "PretrainInputs",
    "PretrainResult",
    "StageConfig",
    "StageRuntime",
    "SupervisedInputs",
    "SupervisedResult",
    "TrackingConfig",
    "TrainConfig",
    "fit",
    "masked_bce",
    "predict_model",
    "pretrain",
    "train_supervised",
]
