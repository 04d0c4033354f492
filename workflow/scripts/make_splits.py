"""Rule make_splits: patient-grouped stratified folds (or a validated user split file)."""

from pathlib import Path

from pipeline.data.splits import SplitConfig, make_splits
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
make_splits(
    cohort=Path(snakemake.input.cohort),
    labels=Path(snakemake.input.labels),
    out=Path(snakemake.output[0]),
    cfg=SplitConfig(**snakemake.params.splits),
)
