"""Rule report: Table 1 (md/csv/json), paired comparisons, figures and report.md."""

from pathlib import Path

from pipeline.evaluation.evaluate import EvalConfig
from pipeline.evaluation.lab_lift import ExplainConfig
from pipeline.evaluation.report import ProbeFiles, ReportOutputs, build_report
from pipeline.logs import setup_logging
from pipeline.tracking import TrackingConfig

setup_logging(snakemake.log[0])
models = snakemake.params.models
out, inp = snakemake.output, snakemake.input
explain = snakemake.params.explain
build_report(
    evaluations=dict(zip(models, map(Path, snakemake.input.evaluations), strict=True)),
    predictions=dict(zip(models, map(Path, snakemake.input.predictions), strict=True)),
    label_manifest=Path(snakemake.input.label_manifest),
    lab_target_manifest=Path(snakemake.input.lab_target_manifest),
    outputs=ReportOutputs(
        table1_md=Path(out.table1_md),
        table1_csv=Path(out.table1_csv),
        table1_json=Path(out.table1_json),
        report_md=Path(out.report),
        plots_dir=Path(out.plots),
    ),
    cfg=EvalConfig(**snakemake.params.evaluate),
    explain=ExplainConfig(**{**explain, "diagnoses": tuple(explain["diagnoses"])}),
    probe=ProbeFiles(Path(inp.probe_md), Path(inp.probe_csv), Path(inp.probe_plot)),
    tracking=TrackingConfig(**snakemake.config["mlflow"], results_dir=snakemake.config["results"]),
)
