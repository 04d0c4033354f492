"""Rule extract_cohort: record list x ED stays -> one row per cohort ECG."""

from pathlib import Path

from pipeline.data.cohort import CohortConfig, extract_cohort
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
tables = {name: Path(path) for name, path in snakemake.input.items()}
extract_cohort(
    tables,
    Path(snakemake.output.cohort),
    CohortConfig(**snakemake.params.cohort),
    dropped_out=Path(snakemake.output.dropped),
)
