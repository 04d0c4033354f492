"""Rules pretrain and pretrain_ecg_only: stage-1 pre-training, objective from config, against
the tabular data or (with params.augment) a second augmented ECG crop (pipeline.train.pretrain).
"""

from pathlib import Path

from pipeline.logs import setup_logging
from pipeline.tracking import TrackingConfig
from pipeline.train.augment import EcgAugmentConfig
from pipeline.train.engine import TrainConfig
from pipeline.train.pretrain import PretrainConfig, PretrainInputs, pretrain
from pipeline.train.stage import StageRuntime

setup_logging(snakemake.log[0])
params = snakemake.params
augment = params.get("augment")
if augment is not None:  # YAML lists; the config's tuple
    augment = {**augment, "scale_range": tuple(augment["scale_range"])}
pretrain(
    PretrainInputs(**{name: Path(path) for name, path in snakemake.input.items()}),
    Path(snakemake.output[0]),
    PretrainConfig(**params.pretrain),
    params.model,
    StageRuntime(
        TrainConfig(**params.train),
        TrackingConfig(**snakemake.config["mlflow"], results_dir=snakemake.config["results"]),
        checkpoint_dir=Path(params.checkpoint_dir),
        threads=snakemake.threads,
    ),
    augment=None if augment is None else EcgAugmentConfig(**augment),
)
