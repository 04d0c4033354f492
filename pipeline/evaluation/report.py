"""The report stage: Table 1, paired bootstrap comparisons, figures and report.md."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.evaluation import plots
from pipeline.evaluation.evaluate import CI_METHOD, EvalConfig, jsonable
from pipeline.evaluation.lab_lift import (
    ExplainConfig,
    explained_diagnoses,
    lab_lift,
    top_labs_text,
)
from pipeline.evaluation.predictions import (
    Predictions,
    check_paired,
    diagnosis_names,
    lab_target_names,
    load_predictions,
)
from pipeline.evaluation.probe_report import summary_table
from pipeline.evaluation.table1 import table1_rows, write_table1
from pipeline.io import atomic_path, write_text_atomic
from pipeline.metrics import auroc_per_label, gap_bridged, paired_difference
from pipeline.registry import comparisons as registered_comparisons
from pipeline.registry import model_names, models
from pipeline.tracking import TrackingConfig, parent_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOutputs:
    """Where the report stage writes (P["table1_md"], ..., P["report"], P["plots"])."""

    table1_md: Path
    table1_csv: Path
    table1_json: Path
    report_md: Path
    plots_dir: Path


@dataclass(frozen=True)
class ProbeFiles:
    """The probe stage's outputs the report links to and summarises."""

    md: Path
    csv: Path
    plot: Path


def load_evaluation(path: Path, model: str, pred: Predictions, cfg: EvalConfig) -> dict[str, Any]:
    summary = json.loads(Path(path).read_text())
    boot = summary.get("bootstrap", {})
    if summary.get("model") != model:
        raise ValueError(f"{path}: evaluation of {summary.get('model')!r}, expected {model!r}")
    if (boot.get("n_bootstrap"), boot.get("seed")) != (cfg.n_bootstrap, cfg.seed):
        raise ValueError(
            f"{path}: computed with n_bootstrap={boot.get('n_bootstrap')}, seed={boot.get('seed')}"
            f" but evaluate is n_bootstrap={cfg.n_bootstrap}, seed={cfg.seed}; re-run evaluate"
        )
    if summary.get("n_records") != len(pred.study_id):
        raise ValueError(
            f"{path}: {summary.get('n_records')} records, {pred.path} has "
            f"{len(pred.study_id)}; re-run evaluate"
        )
    return summary


def macro_point_and_boot(summary: Mapping[str, Any]) -> tuple[float, np.ndarray]:
    boot = np.array(
        [np.nan if v is None else v for v in summary["bootstrap"]["macro_auroc"]], dtype=float
    )
    return float(summary["macro_auroc"]["point"]), boot


def comparisons(
    evaluations: Mapping[str, Mapping[str, Any]], preds: Mapping[str, Predictions]
) -> dict[str, dict[str, Any]]:
    """Paired differences of macro AUROC and the gap the method bridges.

    All on the stored per-resample macro AUROCs, which share resamples because every model
    is evaluated on the same study_id-sorted records with the same seed (checked here).
    """
    out: dict[str, dict[str, Any]] = {}
    for a, b in registered_comparisons():  # each registry entry's ``compare``
        check_paired(preds[a], preds[b])
        est = paired_difference(
            *macro_point_and_boot(evaluations[a]), *macro_point_and_boot(evaluations[b])
        )
        out[f"{a}_minus_{b}"] = {"a": a, "b": b, **est.as_dict()}
    # The pairs above already tied signal_only and multimodal_classification to the method.
    gap = gap_bridged(
        macro_point_and_boot(evaluations["method_diagnoses"]),
        macro_point_and_boot(evaluations["signal_only"]),
        macro_point_and_boot(evaluations["multimodal_classification"]),
    )
    out["gap_bridged"] = {
        "formula": "(method_diagnoses - signal_only) / (multimodal_classification - signal_only)",
        **gap.as_dict(),
    }
    return out


def _frequent(pred: Predictions, n: int, evaluable: np.ndarray) -> list[str]:
    """The ``n`` labels with most test positives among the evaluable ones."""
    n_pos = np.where(evaluable, np.nansum(pred.target, axis=0), -1)
    order = np.argsort(-n_pos, kind="stable")[: min(n, int(evaluable.sum()))]
    return [str(pred.labels[k]) for k in order]


def _figures(
    preds: Mapping[str, Predictions],
    names: dict[str, str],
    cfg: EvalConfig,
    explain: ExplainConfig,
    out_dir: Path,
) -> dict[str, Any]:
    """Write the figures (and the explanation table) into ``out_dir``; return facts for the text."""
    out_dir.mkdir(parents=True)
    method, signal = preds["method_diagnoses"], preds["signal_only"]
    auc_m = auroc_per_label(method.target, method.prob)
    auc_s = auroc_per_label(signal.target, signal.prob)
    above = plots.per_label_scatter(
        auc_s, auc_m, "signal_only", "method_diagnoses", out_dir / "per_label_auroc.png"
    )
    both = ~(np.isnan(auc_m) | np.isnan(auc_s))
    roc_labels = _frequent(method, cfg.n_roc_labels, both)
    plots.roc_grid(
        {"method_diagnoses": method, "signal_only": signal},
        roc_labels,
        names,
        out_dir / "roc_curves.png",
    )
    frequent = _frequent(method, len(method.labels), ~np.isnan(auc_m))
    top, notes = explained_diagnoses(method.labels, frequent, explain)
    ex = lab_lift(method, preds["method_labs"], top, explain.top_fraction)
    ex.to_frame(names).write_csv(out_dir / "explanations_lift.csv")
    row_names = [f"{d} {names.get(d, '')}".strip() for d in top]
    plots.lift_heatmap(ex.lift, row_names, ex.labs.tolist(), out_dir / "explanations_lift.png")
    return {
        "n_above_diagonal": above,
        "n_compared": int(both.sum()),
        "roc_labels": roc_labels,
        "explanation_rows": top_labs_text(ex, names, n=5),
        "explanation_notes": notes,
        "explain": explain,
        "n_lab_targets": len(ex.labs),
    }


def _report_text(
    table_md: str,
    comp: Mapping[str, Mapping[str, Any]],
    evaluations: Mapping[str, Mapping[str, Any]],
    facts: Mapping[str, Any],
    cfg: EvalConfig,
    plots_rel: str,
) -> str:
    n_test = evaluations["method_diagnoses"]["n_records"]
    ex_cfg = facts["explain"]
    lines = [
        "# ECG-explain: results on the test fold",
        "",
        f"Test records (first ECG per stay): {n_test}. Intervals: 95%, {CI_METHOD}; "
        f"{cfg.n_bootstrap} resamples, seed {cfg.seed}.",
        "",
        "## Table 1",
        "",
        table_md,
        "Paper values are macro AUROCs on real MIMIC data, for comparison only.",
        "",
        *_models_section(),
        "## Paired bootstrap comparisons (same resamples)",
        "",
        "| comparison | difference in macro AUROC (95% CI) | resamples |",
        "|---|---|---|",
    ]
    for key, c in comp.items():
        if key != "gap_bridged":
            lines.append(f"| {c['a']} - {c['b']} | {fmt_range(c)} | {c['n_resamples']} |")
    g = comp["gap_bridged"]
    lines += [
        "",
        f"Share of the signal-only-to-multimodal gap the method bridges, {g['formula']}: "
        f"{fmt_range(g, '.3f')} ({g['n_resamples']} resamples; "
        "unstable when the two baselines are close).",
        "",
        "## Labels evaluated",
        "",
        "| model | labels | evaluated | skipped (a class missing in test targets) |",
        "|---|---|---|---|",
    ]
    for m in model_names():
        e = evaluations[m]
        lines.append(
            f"| {m} | {e['n_labels']} | {e['n_labels_evaluated']} | {e['n_labels_skipped']} |"
        )
    lines += [
        "",
        "## Per-label AUROC: method vs signal-only",
        "",
        f"{facts['n_above_diagonal']} of {facts['n_compared']} labels score higher with the "
        "method.",
        "",
        f"![per-label AUROC]({plots_rel}/per_label_auroc.png)",
        "",
        f"## ROC curves of the {len(facts['roc_labels'])} most frequent labels",
        "",
        f"![ROC curves]({plots_rel}/roc_curves.png)",
        "",
        "## Explanations: predicted lab abnormalities of flagged ECGs",
        "",
        f"For the diagnoses with known lab causes ({', '.join(ex_cfg.diagnoses)}, where they "
        f"are labels) and the {ex_cfg.n_frequent} most frequent others, ECGs in the top "
        f"{ex_cfg.top_fraction:.0%} of the diagnosis score are flagged; the lift is the lab "
        "head's mean predicted probability among them divided by that among the other ECGs "
        "(observed abnormality rates among measured ECGs alongside). The last column ranks, "
        "by lift, the lab targets the diagnosis is known to move. "
        f"Full table: [explanations_lift.csv]({plots_rel}/explanations_lift.csv).",
        "",
        f"![lift heatmap]({plots_rel}/explanations_lift.png)",
        "",
        f"| diagnosis | flagged ECGs | lab targets with the highest lift "
        f"| expected lab: rank of {facts['n_lab_targets']} |",
        "|---|---|---|---|",
        *facts["explanation_rows"],
        "",
        *[f"- {note}" for note in facts["explanation_notes"]],
        "",
    ]
    return "\n".join(lines)


def _models_section() -> list[str]:
    """What each model is, from its registry entry (pipeline/registry.py)."""
    lines = [
        "## Models",
        "",
        "| model | task | encoder starts from | tabular inputs | loss | frozen | what it is |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in models().values():
        start = m.init or "scratch"
        teacher = f" (teacher: {m.teacher})" if m.teacher else ""
        cells = (m.name, m.task, start, m.tabular or "none", m.objective + teacher, m.freezing)
        lines.append("| " + " | ".join((*cells, m.doc)) + " |")
    return [*lines, ""]


def _probe_section(probe: ProbeFiles, report_dir: Path) -> str:
    """The probe summary (mean probe score per encoder) with links to probe.md and its plot."""
    frame = pl.read_csv(probe.csv, schema_overrides={"score": pl.Float64})
    md, plot = (os.path.relpath(p, report_dir) for p in (probe.md, probe.plot))
    lines = [
        "## Probe: clinical knowledge in the frozen ECG encoders",
        "",
        "Linear probes on frozen embeddings of the untrained encoder, the stage-1 encoders and "
        "the models whose registry entry has probe=True, fitted on the training records and "
        "scored on the test records (R2 for values, AUROC for flags). Per variable, with "
        f"intervals: [probe.md]({md}).",
        "",
        *summary_table(frame),
        "",
        f"![probe heatmap]({plot})",
        "",
    ]
    return "\n".join(lines)


def fmt_range(c: Mapping[str, Any], spec: str = "+.3f") -> str:
    """``+0.012 (-0.004 to +0.030)``: "to" because the ends may be negative."""
    if c["point"] is None:
        return "-"
    if c["ci_low"] is None or c["ci_high"] is None:
        return format(c["point"], spec)
    return f"{c['point']:{spec}} ({c['ci_low']:{spec}} to {c['ci_high']:{spec}})"


def build_report(
    evaluations: Mapping[str, Path],
    predictions: Mapping[str, Path],
    label_manifest: Path,
    lab_target_manifest: Path,
    outputs: ReportOutputs,
    cfg: EvalConfig,
    *,
    explain: ExplainConfig | None = None,
    probe: ProbeFiles | None = None,
    tracking: TrackingConfig | None = None,
) -> dict[str, Any]:
    """Build Table 1 (md/csv/json), the comparisons, the figures and report.md.

    Args:
        evaluations: Model name -> evaluation JSON, for every registered model.
        predictions: Model name -> predictions ``.npz`` (alignment checks and figures).
        label_manifest: Diagnosis label manifest (names).
        lab_target_manifest: Lab target manifest (names).
        outputs: Output paths.
        cfg: The ``evaluate`` settings the evaluations must have used.
        explain: Which diagnoses the explanation table covers (default: ExplainConfig()).
        probe: The probe stage's outputs, summarised in a section of report.md.
        tracking: MLflow settings; metrics and files go to the parent run.

    Returns:
        ``{"table1": rows, "comparisons": ...}``.

    Raises:
        ValueError: If a model is missing, an evaluation is stale, or paired models were not
            evaluated on the same records, labels and targets.
    """
    specs = models()
    missing = [m for m in specs if m not in evaluations or m not in predictions]
    if missing:
        raise ValueError(f"the report needs evaluations and predictions of {missing}")
    preds = {m: load_predictions(Path(predictions[m])) for m in specs}
    evals = {m: load_evaluation(Path(evaluations[m]), m, preds[m], cfg) for m in specs}
    for m, spec in specs.items():
        if preds[m].task != spec.task:
            raise ValueError(f"{preds[m].path}: task {preds[m].task!r}, expected {spec.task!r}")
    rows = table1_rows(evals)
    comp = jsonable(comparisons(evals, preds))
    names = diagnosis_names(label_manifest) | lab_target_names(lab_target_manifest)
    with atomic_path(outputs.plots_dir) as tmp_dir:
        facts = _figures(preds, names, cfg, explain or ExplainConfig(), tmp_dir)
    table_md = write_table1(rows, outputs.table1_md, outputs.table1_csv, outputs.table1_json, comp)
    rel = os.path.relpath(outputs.plots_dir, Path(outputs.report_md).parent)
    text = _report_text(table_md, comp, evals, facts, cfg, rel)
    if probe is not None:
        text += _probe_section(probe, Path(outputs.report_md).parent)
    write_text_atomic(outputs.report_md, text)
    _track(tracking, evals, comp, outputs)
    log.info("report written to %s", outputs.report_md)
    return {"table1": rows, "comparisons": comp}


def _track(
    tracking: TrackingConfig | None,
    evals: Mapping[str, Mapping[str, Any]],
    comp: Mapping[str, Mapping[str, Any]],
    outputs: ReportOutputs,
) -> None:
    if tracking is None:
        return
    metrics: dict[str, float] = {}
    sources = {f"{m}.macro_auroc": e["macro_auroc"] for m, e in evals.items()} | dict(comp)
    for name, est in sources.items():
        for key in ("point", "ci_low", "ci_high"):
            metrics[f"{name}.{key}"] = np.nan if est[key] is None else est[key]
    with parent_run(tracking.tracking_uri, tracking.experiment, Path(tracking.results_dir)) as run:
        run.log_metrics(metrics)
        for path in (outputs.table1_md, outputs.table1_csv, outputs.table1_json, outputs.report_md):
            run.log_artifact(path)
        for png in sorted(Path(outputs.plots_dir).iterdir()):
            run.log_artifact(png, "plots")
