"""Rule label_subset: the training records whose diagnosis labels supervised models see."""

from pathlib import Path

from pipeline.data.label_subset import labelled_train_ids
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
labelled_train_ids(
    train_ids=Path(snakemake.input.train),
    folds=Path(snakemake.input.folds),
    cohort=Path(snakemake.input.cohort),
    fraction=float(snakemake.params.fraction),
    out=Path(snakemake.output[0]),
)
