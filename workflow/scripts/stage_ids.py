"""Rule stage_ids: train / val / test id lists from the folds, the cohort and the shard index."""

from pathlib import Path

from pipeline.data.splits import SplitConfig, stage_ids
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
stage_ids(
    folds=Path(snakemake.input.folds),
    cohort=Path(snakemake.input.cohort),
    shard_index=Path(snakemake.input.shard_index),
    out={part: Path(snakemake.output[part]) for part in ("train", "val", "test")},
    cfg=SplitConfig(**snakemake.params.splits),
)
