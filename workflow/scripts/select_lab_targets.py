"""Rule select_lab_targets: lab targets with enough of each class in val and test."""

from pathlib import Path

from pipeline.data.splits import select_lab_targets
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
select_lab_targets(
    lab_targets=Path(snakemake.input.lab_targets),
    val_ids=Path(snakemake.input.val),
    test_ids=Path(snakemake.input.test),
    out=Path(snakemake.output[0]),
    min_per_class=int(snakemake.params.min_per_class),
)
