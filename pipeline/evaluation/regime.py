"""The regime map: when does clinical knowledge transfer? (``snakemake regime``, issue 22)

Each cell is a synthetic world x a label fraction; each of its seeds trained the same models
(pipeline/runs.py regime_runs), all evaluated on the world's one test fold. As in the study
(pipeline/evaluation/study.py), every (seed, model) of a cell is resampled with the same
bootstrap seed on the same study_id-sorted records, so a paired difference a - b is pooled
over seeds resample by resample and its 95 % percentile interval keeps the test-set
uncertainty. Differences are of macro AUROC over all labels and over each label group
(pipeline/evaluation/label_groups.py): labels the waveform shows directly, lab-defined
labels, and labels with no waveform signature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.evaluation.evaluate import CI_METHOD, EvalConfig
from pipeline.evaluation.label_groups import GROUPS, UNLISTED, GroupRule, group_of
from pipeline.evaluation.predictions import Predictions, check_paired, load_predictions
from pipeline.evaluation.regime_plot import regime_plot
from pipeline.evaluation.report import load_evaluation
from pipeline.evaluation.study import pooled_over_seeds
from pipeline.io import atomic_path, write_text_atomic
from pipeline.metrics import auroc_per_label, bootstrap_auroc, macro, percentile_interval

# (a, b): the paired differences a - b of every cell
COMPARISONS = (
    ("method_diagnoses", "signal_only"),
    ("method_diagnoses", "ssl_ecg_only"),
    ("distilled", "signal_only"),
)
ALL = "all"  # the group of every label: the cell's macro AUROC


@dataclass(frozen=True)
class RegimeOutputs:
    csv: Path
    md: Path
    plot: Path


@dataclass(frozen=True)
class Resampled:
    """One model's per-label AUROC on the test records and on each bootstrap resample.

    Attributes:
        point: (K,) AUROC per label; NaN where the test records lack a class.
        boot: (B, K) the same on each resample; NaN where a resample lacks a class.
    """

    point: np.ndarray
    boot: np.ndarray


def resampled(pred: Predictions, cfg: EvalConfig) -> Resampled:
    """Per-label AUROC and its resamples, drawn as evaluate draws them (same seed)."""
    point = auroc_per_label(pred.target, pred.prob)  # (K,)
    defined = np.flatnonzero(~np.isnan(point))
    boot = np.full((cfg.n_bootstrap, point.size), np.nan)  # (B, K)
    boot[:, defined] = bootstrap_auroc(pred.target, pred.prob, cfg.n_bootstrap, cfg.seed, defined)
    return Resampled(point, boot)


def label_columns(labels: Sequence[str], rules: Sequence[GroupRule]) -> dict[str, np.ndarray]:
    """Group -> column indices of its labels: every label first (``all``), then each group
    with at least one label (GROUPS order, ``unlisted`` last)."""
    group = [group_of(code, rules) for code in labels]
    out = {ALL: np.arange(len(labels))}
    for name in (*GROUPS, UNLISTED):
        cols = np.flatnonzero([g == name for g in group])
        if cols.size:
            out[name] = cols
    return out


def group_difference(a: Resampled, b: Resampled, cols: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro AUROC of ``a`` minus ``b`` over labels ``cols``: point and (B,) resamples."""
    point = float(macro(a.point[cols] - b.point[cols])[0])
    return point, macro(a.boot[:, cols] - b.boot[:, cols])  # (B,)


def cell_rows(
    per_seed: Mapping[int, Mapping[str, Resampled]],
    columns: Mapping[str, np.ndarray],
    comparisons: Sequence[tuple[str, str]] = COMPARISONS,
) -> list[dict[str, Any]]:
    """One cell's rows: each model's macro AUROC, then each comparison per label group,
    pooled over seeds (mean of the seeds' points; interval from the seed-averaged resamples)."""
    seeds = sorted(per_seed)
    models = list(per_seed[seeds[0]])
    rows = []
    for m in models:
        est = [(float(macro(r.point)[0]), macro(r.boot)) for r in (per_seed[s][m] for s in seeds)]
        rows.append(_row("auroc", m, ALL, columns[ALL], per_seed[seeds[0]][m], est))
    for a, b in comparisons:
        for group, cols in columns.items():
            est = [group_difference(per_seed[s][a], per_seed[s][b], cols) for s in seeds]
            rows.append(_row("difference", f"{a} - {b}", group, cols, per_seed[seeds[0]][a], est))
    return rows


def _row(
    kind: str,
    name: str,
    group: str,
    cols: np.ndarray,
    ref: Resampled,
    est: Sequence[tuple[float, np.ndarray]],
) -> dict[str, Any]:
    pooled = percentile_interval(*pooled_over_seeds(est))
    return {
        "kind": kind,
        "name": name,
        "group": group,
        "n_labels": int((~np.isnan(ref.point[cols])).sum()),
        "n_seeds": len(est),
        "point": pooled.point,
        "ci_low": pooled.low,
        "ci_high": pooled.high,
        "per_seed": ";".join(f"{p:.4f}" for p, _ in est),
    }


def load_cell(
    files: Mapping[int, Mapping[str, tuple[Path, Path]]], cfg: EvalConfig
) -> tuple[dict[int, dict[str, Resampled]], list[str]]:
    """Seed -> model -> (evaluation, predictions) files of one cell: the resampled AUROCs
    and the label codes, after checking every pair shares records, labels and targets."""
    first: Predictions | None = None
    out: dict[int, dict[str, Resampled]] = {}
    for seed, per_model in files.items():
        out[seed] = {}
        for model, (evaluation, pred_path) in per_model.items():
            pred = load_predictions(pred_path)
            first = first or pred
            check_paired(first, pred)
            load_evaluation(evaluation, model, pred, cfg)  # same bootstrap settings, records
            out[seed][model] = resampled(pred, cfg)
    if first is None:
        raise ValueError("a regime cell needs at least one seed and model")
    return out, first.labels.tolist()


Cell = tuple[str, float]  # (world, label fraction)


def regime_frame(
    cells: Mapping[Cell, Mapping[int, Mapping[str, tuple[Path, Path]]]],
    rules: Sequence[GroupRule],
    cfg: EvalConfig,
    comparisons: Sequence[tuple[str, str]] = COMPARISONS,
) -> tuple[pl.DataFrame, dict[str, dict[str, list[str]]]]:
    """Every cell's rows, and per world the labels of each group."""
    rows, groups = [], {}
    for (world, fraction), files in cells.items():
        per_seed, labels = load_cell(files, cfg)
        missing = {m for pair in comparisons for m in pair} - set(per_seed[min(per_seed)])
        if missing:
            raise ValueError(
                f"regime cell {world}, {fraction}: no predictions of {sorted(missing)}"
            )
        columns = label_columns(labels, rules)
        groups[world] = {g: [labels[i] for i in c] for g, c in columns.items() if g != ALL}
        for row in cell_rows(per_seed, columns, comparisons):
            rows.append({"world": world, "label_fraction": float(fraction), **row})
    return pl.DataFrame(rows), groups


def _fmt(row: Mapping[str, Any]) -> str:
    spec = "+.3f" if row["kind"] == "difference" else ".3f"
    if row["point"] is None or np.isnan(row["point"]):
        return "-"
    if np.isnan(row["ci_low"]):
        return format(row["point"], spec)
    return f"{row['point']:{spec}} ({row['ci_low']:{spec}} to {row['ci_high']:{spec}})"


def regime_markdown(
    frame: pl.DataFrame, groups: Mapping[str, Mapping[str, Sequence[str]]], cfg: EvalConfig
) -> str:
    """The regime map as markdown: differences per cell, per label group, each model's AUROC."""
    comps = frame.filter(pl.col("kind") == "difference")["name"].unique(maintain_order=True)
    cells = frame.select("world", "label_fraction").unique(maintain_order=True).rows()
    seeds = int(frame.select(pl.col("n_seeds").max()).item())
    lines = [
        "# Regime map: world x label fraction",
        "",
        f"Pooled over {seeds} seed(s) per cell: the mean of the seeds' paired differences in "
        f"macro AUROC, its 95% interval ({CI_METHOD}; {cfg.n_bootstrap} resamples, seed "
        f"{cfg.seed}) from the seed-averaged resamples of the world's test fold.",
        "",
        "## Paired differences, all labels",
        "",
        "| world | label fraction | " + " | ".join(comps) + " |",
        "|---|---|" + "---|" * len(comps),
    ]
    cell_of = {k: v for k, v in frame.group_by(["world", "label_fraction", "group"])}
    for world, fraction in cells:
        sub = cell_of[(world, fraction, ALL)].filter(pl.col("kind") == "difference")
        cells_md = [_fmt(sub.filter(pl.col("name") == c).row(0, named=True)) for c in comps]
        lines.append(f"| {world} | {fraction:g} | " + " | ".join(cells_md) + " |")
    lines += [
        "",
        "## Paired differences by label group",
        "",
        "waveform: rhythm, conduction, ST/ischaemia; lab: defined by a laboratory value; "
        "none: no waveform signature (pipeline/resources/label_groups.tsv).",
        "",
        "| world | label fraction | group (labels) | " + " | ".join(comps) + " |",
        "|---|---|---|" + "---|" * len(comps),
    ]
    for world, fraction in cells:
        for group in (*GROUPS, UNLISTED):
            if (world, fraction, group) not in cell_of:
                continue
            sub = cell_of[(world, fraction, group)]
            n = int(sub["n_labels"][0])
            cells_md = [_fmt(sub.filter(pl.col("name") == c).row(0, named=True)) for c in comps]
            lines.append(
                f"| {world} | {fraction:g} | {group} ({n}) | " + " | ".join(cells_md) + " |"
            )
    lines += _auroc_table(frame, cells)
    lines += ["", "## Labels per group", ""]
    for world, by_group in groups.items():
        for group, codes in by_group.items():
            lines.append(f"- {world}, {group}: {', '.join(codes)}")
    return "\n".join(lines) + "\n"


def _auroc_table(frame: pl.DataFrame, cells: Sequence[tuple[str, float]]) -> list[str]:
    auroc = frame.filter(pl.col("kind") == "auroc")
    models = auroc["name"].unique(maintain_order=True).to_list()
    lines = [
        "",
        "## Macro AUROC per model (pooled over seeds)",
        "",
        "| world | label fraction | " + " | ".join(models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for world, fraction in cells:
        sub = auroc.filter((pl.col("world") == world) & (pl.col("label_fraction") == fraction))
        cells_md = [_fmt(sub.filter(pl.col("name") == m).row(0, named=True)) for m in models]
        lines.append(f"| {world} | {fraction:g} | " + " | ".join(cells_md) + " |")
    return lines


def regime_table(
    cells: Mapping[Cell, Mapping[int, Mapping[str, tuple[Path, Path]]]],
    rules: Sequence[GroupRule],
    outputs: RegimeOutputs,
    cfg: EvalConfig,
) -> pl.DataFrame:
    """Write the regime map (csv, md, png) and return its rows.

    Args:
        cells: (world, label fraction) -> seed -> model -> (evaluation JSON, predictions).
        rules: The label grouping (label_groups.load_group_rules()).
        outputs: Where to write.
        cfg: The ``evaluate`` settings every evaluation must have used.
    """
    frame, groups = regime_frame(cells, rules, cfg)
    with atomic_path(outputs.csv, suffix=".csv") as tmp:
        frame.write_csv(tmp)
    write_text_atomic(outputs.md, regime_markdown(frame, groups, cfg))
    regime_plot(frame, outputs.plot)
    return frame
