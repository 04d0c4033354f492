"""The sweep table: each variant against the default run, chosen on validation.

For every model a variant re-trains, one block: the default run's row, then each variant's,
with the validation macro AUROC the model was selected on (model.json ``training``), its
best epoch, and its test macro AUROC with the paired difference to the default on the same
bootstrap resamples (every model is evaluated on the same study_id-sorted test records with
the same bootstrap seed; checked). The choice is made on validation only: the test columns
say what the choice would cost or gain, they never make it. A validation difference smaller
than the study's across-seed sd (results/study/table1.md) is training noise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from pipeline.evaluation.evaluate import EvalConfig, jsonable
from pipeline.evaluation.predictions import Predictions, check_paired, load_predictions
from pipeline.evaluation.report import fmt_range, load_evaluation, macro_point_and_boot
from pipeline.io import atomic_path, write_text_atomic
from pipeline.metrics import paired_difference, percentile_interval
from pipeline.runs import DEFAULT


@dataclass(frozen=True)
class SweepRun:
    """One trained model of the sweep: the default run's (``variant="default"``) or a
    variant's, with its model directory, test evaluation and test predictions."""

    variant: str
    model: str
    model_dir: Path
    evaluation: Path
    predictions: Path


@dataclass(frozen=True)
class SweepOutputs:
    md: Path
    csv: Path
    json: Path
    plot: Path


def _training(run: SweepRun) -> dict[str, Any]:
    path = Path(run.model_dir) / "model.json"
    meta = json.loads(path.read_text())
    if meta.get("model") != run.model or "training" not in meta:
        raise ValueError(f"{path}: not a trained {run.model!r} (re-run its training)")
    return {**meta["training"], "num_threads": meta.get("num_threads")}


@dataclass(frozen=True)
class _Scored:
    pred: Predictions
    test: tuple[float, np.ndarray]  # macro AUROC: point, per bootstrap resample
    train: dict[str, Any]


def _score(run: SweepRun, cfg: EvalConfig) -> _Scored:
    pred = load_predictions(Path(run.predictions))
    summary = load_evaluation(Path(run.evaluation), run.model, pred, cfg)
    return _Scored(pred, macro_point_and_boot(summary), _training(run))


def _rows(runs: Sequence[SweepRun], cfg: EvalConfig) -> list[dict[str, Any]]:
    """One row per run with val, best epoch, test and the paired test difference."""
    defaults = {r.model: _score(r, cfg) for r in runs if r.variant == DEFAULT}
    rows = []
    for run in runs:
        if run.model not in defaults:
            raise ValueError(f"sweep: no default-run row for {run.model!r}")
        ref = defaults[run.model]
        scored = ref if run.variant == DEFAULT else _score(run, cfg)
        check_paired(ref.pred, scored.pred)  # the variant is tested on the default's records
        test, train, ref_train = scored.test, scored.train, ref.train
        diff = paired_difference(*test, *ref.test)
        rows.append(
            {
                "model": run.model,
                "variant": run.variant,
                "val_auroc": train["head_val_auroc"],
                "val_minus_default": train["head_val_auroc"] - ref_train["head_val_auroc"],
                "best_epoch": int(train["best_epoch"]),
                "epochs_run": int(train["epochs_run"]),
                "num_threads": train["num_threads"],
                "test_auroc": percentile_interval(*test).as_dict(),
                "test_minus_default": diff.as_dict(),
            }
        )
    return rows


def _choose(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Model -> the variant with the highest validation AUROC (the default on a tie)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:  # default rows come first, so a tie keeps the default
        if row["model"] not in best or row["val_auroc"] > best[row["model"]]["val_auroc"]:
            best[row["model"]] = row
    return {m: r["variant"] for m, r in best.items()}


def _md_row(r: Mapping[str, Any], is_chosen: bool, settings: Mapping[str, str]) -> str:
    default = r["variant"] == DEFAULT
    cells = [
        f"**{r['variant']}**" if is_chosen else r["variant"],
        settings.get(r["variant"], "config as is"),
        f"{r['val_auroc']:.4f}",
        "" if default else f"{r['val_minus_default']:+.4f}",
        f"{r['best_epoch']} ({r['epochs_run']})",
        fmt_range(r["test_auroc"], ".3f"),
        "" if default else fmt_range(r["test_minus_default"]),
    ]
    return "| " + " | ".join(cells) + " |"


def _markdown(
    rows: Sequence[dict[str, Any]], chosen: Mapping[str, str], settings: Mapping[str, str]
) -> str:
    lines = [
        "# Sweep: variants against the default run",
        "",
        "Chosen on the validation fold (macro AUROC of the kept epoch); the test columns are"
        " for reference only and must not choose. A validation difference below the study's"
        " across-seed sd (results/study/table1.md) is training noise: confirm a change with"
        " `snakemake study` before making it the default.",
    ]
    threads = {r["num_threads"] for r in rows}
    if len(threads) > 1:
        lines += [
            "",
            f"**Warning:** trained with different thread counts ({sorted(threads, key=str)});"
            " results are bit-identical only for the same count, so differences include that.",
        ]
    for model in dict.fromkeys(r["model"] for r in rows):
        lines += [
            "",
            f"## {model}: chosen `{chosen[model]}`",
            "",
            "| variant | settings | val macro AUROC | val - default | best epoch (run) |"
            " test macro AUROC (95% CI) | test - default (95% CI) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["model"] == model):
            lines.append(_md_row(r, chosen[model] == r["variant"], settings))
    return "\n".join(lines) + "\n"


def _plot(rows: Sequence[dict[str, Any]], chosen: Mapping[str, str], out: Path) -> None:
    """One panel per model: validation (filled) and test (open, 95% CI) per variant."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    heights = [sum(r["model"] == m for r in rows) for m in models]
    fig = Figure(figsize=(7, 0.45 * sum(heights) + 1.2 * len(models)))
    axes = fig.subplots(len(models), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, model in zip(axes[:, 0], models, strict=True):
        block = [r for r in rows if r["model"] == model][::-1]
        y = np.arange(len(block))
        test = [r["test_auroc"] for r in block]
        point = np.array([t["point"] for t in test])
        low = np.array([t["point"] if t["ci_low"] is None else t["ci_low"] for t in test])
        high = np.array([t["point"] if t["ci_high"] is None else t["ci_high"] for t in test])
        ax.errorbar(point, y, xerr=[point - low, high - point], fmt="o", mfc="white",
                    color="grey", label="test (95% CI)")  # fmt: skip
        ax.scatter([r["val_auroc"] for r in block], y, color="C0", zorder=3, label="validation")
        ticks = [r["variant"] + (" *" if chosen[model] == r["variant"] else "") for r in block]
        ax.set_yticks(y, ticks)
        ax.set_title(f"{model} (* chosen on validation)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("macro AUROC")
    axes[0, 0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)


def sweep_table(
    runs: Sequence[SweepRun],
    settings: Mapping[str, Mapping[str, Any]],
    outputs: SweepOutputs,
    cfg: EvalConfig,
) -> dict[str, Any]:
    """Write the sweep table (Markdown, CSV, JSON) and its figure.

    Args:
        runs: the default run's row for every swept model, then the variants' rows.
        settings: variant name -> its dotted settings (sweep.variants).
        outputs: where the table and figure go.
        cfg: the evaluate section (the evaluations' bootstrap must match it).

    Returns:
        The JSON summary: rows and, per model, the variant chosen on validation.

    Raises:
        ValueError: If there are no runs, a model lacks its default row, or a variant was
            tested on other records than the default run.
    """
    if not runs:
        raise ValueError("sweep: config sweep.variants is empty; add variants to sweep")
    rows = _rows(runs, cfg)
    chosen = _choose(rows)
    text = {v: ", ".join(f"{k}={x}" for k, x in sorted(s.items())) for v, s in settings.items()}
    write_text_atomic(outputs.md, _markdown(rows, chosen, text))
    flat = [
        {
            **{k: v for k, v in r.items() if not isinstance(v, dict)},
            "settings": text.get(r["variant"], ""),
            **{f"test_{k}": v for k, v in r["test_auroc"].items()},
            **{f"test_minus_default_{k}": v for k, v in r["test_minus_default"].items()},
            "chosen": chosen[r["model"]] == r["variant"],
        }
        for r in rows
    ]
    with atomic_path(outputs.csv, suffix=".csv") as tmp:
        pl.DataFrame(flat).write_csv(tmp)
    summary = {"rows": rows, "chosen": chosen, "settings": dict(settings)}
    write_text_atomic(outputs.json, json.dumps(jsonable(summary), indent=1) + "\n")
    _plot(rows, chosen, outputs.plot)
    return summary
