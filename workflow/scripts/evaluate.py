"""Rule evaluate: macro and per-label AUROC with bootstrap intervals for one model."""

from pathlib import Path

from pipeline.evaluation.evaluate import EvalConfig, evaluate_predictions
from pipeline.evaluation.predictions import label_names_for
from pipeline.logs import setup_logging
from pipeline.tracking import TrackingConfig

setup_logging(snakemake.log[0])
evaluate_predictions(
    pred=Path(snakemake.input.predictions),
    out_json=Path(snakemake.output.summary),
    out_per_label=Path(snakemake.output.per_label),
    cfg=EvalConfig(**snakemake.params.evaluate),
    label_names=label_names_for(
        snakemake.params.task,
        Path(snakemake.input.label_manifest),
        Path(snakemake.input.lab_target_manifest),
    ),
    tracking=TrackingConfig(**snakemake.config["mlflow"], results_dir=snakemake.config["results"]),
)
