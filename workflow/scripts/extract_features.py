"""Rule extract_features: MDS-ED tabular features and their manifest (routine / lab groups)."""

from pathlib import Path

from pipeline.data.features import FeatureConfig, extract_features
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
tables = {name: Path(path) for name, path in snakemake.input.items() if name != "cohort"}
extract_features(
    cohort=Path(snakemake.input.cohort),
    tables=tables,
    out=Path(snakemake.output.features),
    manifest_out=Path(snakemake.output.manifest),
    cfg=FeatureConfig(**snakemake.params.features),
)
