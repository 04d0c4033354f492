"""Rule extract_labels: ICD-10 diagnosis labels (with ancestors) and the label manifest."""

from pathlib import Path

from pipeline.data.labels import LabelConfig, extract_labels
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
tables = {name: Path(path) for name, path in snakemake.input.items() if name != "cohort"}
extract_labels(
    cohort=Path(snakemake.input.cohort),
    tables=tables,
    out=Path(snakemake.output.labels),
    manifest_out=Path(snakemake.output.manifest),
    cfg=LabelConfig(**snakemake.params.labels),
)
