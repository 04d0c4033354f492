"""Rule extract_beyond: out-of-cohort ECGs with time-matched tabular data and their features."""

from pathlib import Path

from pipeline.data.beyond import BeyondConfig, extract_beyond
from pipeline.data.features import FeatureConfig
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
inputs = snakemake.input
tables = {
    name: Path(path) for name, path in inputs.items() if name not in ("cohort", "cohort_features")
}
extract_beyond(
    tables,
    cohort=Path(inputs.cohort),
    cohort_features=Path(inputs.cohort_features),
    out=Path(snakemake.output.beyond),
    dropped_out=Path(snakemake.output.dropped),
    cfg=BeyondConfig(**snakemake.params.beyond),
    feature_cfg=FeatureConfig(**snakemake.params.features),
    ed_window_minutes=snakemake.params.cohort["ed_window_minutes"],
)
