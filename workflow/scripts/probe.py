"""Rule probe: the probe table, heatmap and report from the per-encoder probe scores."""

from pathlib import Path

from pipeline.evaluation.probe import combine
from pipeline.evaluation.probe_report import ProbeOutputs
from pipeline.logs import setup_logging

setup_logging(snakemake.log[0])
out = snakemake.output
combine(
    dict(zip(snakemake.params.encoders, map(Path, snakemake.input), strict=True)),
    ProbeOutputs(Path(out.md), Path(out.csv), Path(out.plot)),
    n_bootstrap=snakemake.params.n_bootstrap,
)
