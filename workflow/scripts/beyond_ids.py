"""Rule beyond_ids: the out-of-cohort ECGs stage 1 may train on (fold discipline)."""

from pathlib import Path

from pipeline.data.beyond import beyond_train_ids
from pipeline.data.splits import SplitConfig
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
beyond_train_ids(
    beyond=Path(snakemake.input.beyond),
    folds=Path(snakemake.input.folds),
    shard_index=Path(snakemake.input.shard_index),
    out=Path(snakemake.output[0]),
    cfg=SplitConfig(**snakemake.params.splits),
)
