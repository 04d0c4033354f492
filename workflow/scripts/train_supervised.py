"""Rule train_model: one supervised model of pipeline.registry (pipeline.train.supervised).

The rule's ``params.kind`` names the model; its named inputs are the fields of
``SupervisedInputs`` (shard_index, train/val/test ids, targets, target_names and, where
the model needs them, features, feature_manifest, init_dir).
"""

from pathlib import Path

from pipeline.logs import setup_logging
from pipeline.registry import spec
from pipeline.tracking import TrackingConfig
from pipeline.train.engine import TrainConfig
from pipeline.train.stage import StageRuntime
from pipeline.train.stage_config import stage_config
from pipeline.train.supervised import SupervisedInputs, train_supervised

setup_logging(snakemake.log[0])
params = snakemake.params
train_supervised(
    params.kind,
    SupervisedInputs(**{name: Path(path) for name, path in snakemake.input.items()}),
    Path(snakemake.output.model_dir),
    Path(snakemake.output.predictions),
    stage_config(spec(params.kind).section, dict(params.stage)),
    params.model,
    StageRuntime(
        TrainConfig(**params.train),
        TrackingConfig(**snakemake.config["mlflow"], results_dir=snakemake.config["results"]),
        checkpoint_dir=Path(params.checkpoint_dir),
        threads=snakemake.threads,
    ),
)
