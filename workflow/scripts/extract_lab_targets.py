"""Rule extract_lab_targets: CardioLab {lab}_{low|high} targets and their manifest."""

from pathlib import Path

from pipeline.data.lab_targets import LabTargetConfig, extract_lab_targets
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
tables = {name: Path(path) for name, path in snakemake.input.items() if name != "cohort"}
extract_lab_targets(
    cohort=Path(snakemake.input.cohort),
    tables=tables,
    out=Path(snakemake.output.targets),
    manifest_out=Path(snakemake.output.manifest),
    cfg=LabTargetConfig(**snakemake.params.lab_targets),
)
