"""The study's Table 1: the registered models trained once per seed, evaluated on one test fold.

Every seed's models are evaluated on the same study_id-sorted test records with the same
bootstrap seed, so resample ``b`` draws the same records for every (seed, model): paired
differences and the gap bridged are pooled over seeds resample by resample (the mean over
seeds of ``a_s - b_s`` on resample ``b``), which keeps the test-set uncertainty and
averages out the training noise. The across-seed standard deviation shows the latter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import norm

from pipeline.evaluation.evaluate import CI_METHOD, EvalConfig, jsonable
from pipeline.evaluation.predictions import Predictions, check_paired, load_predictions
from pipeline.evaluation.report import fmt_range, load_evaluation, macro_point_and_boot
from pipeline.io import atomic_path, write_text_atomic
from pipeline.metrics import Estimate, gap_bridged, percentile_interval
from pipeline.registry import comparisons, model_names

PAPER_EFFECT = 0.027  # method - signal-only macro AUROC on real MIMIC (0.795 - 0.768)
POWER = 0.8
ALPHA = 0.05


@dataclass(frozen=True)
class StudyOutputs:
    md: Path
    csv: Path
    json: Path


def pooled_over_seeds(est: Sequence[tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
    """Mean over seeds of the point estimates and, resample by resample, of the resamples."""
    return float(np.mean([p for p, _ in est])), np.mean([b for _, b in est], axis=0)


def needed_records(n_test: int, sd: float, effect: float = PAPER_EFFECT) -> dict[str, Any]:
    """Test records for ``effect`` to be resolved, with the bootstrap SD scaling as 1/sqrt(n).

    ``power_80``: a two-sided 5% test detects the effect with 80% power,
    n = n_test * ((z_0.975 + z_0.8) * sd / effect)^2. ``ci_excludes_0``: the 95% interval of
    an estimate equal to the effect just excludes zero (50% power),
    n = n_test * (z_0.975 * sd / effect)^2.
    """
    z_a, z_b = norm.ppf(1 - ALPHA / 2), norm.ppf(POWER)
    if not math.isfinite(sd) or sd <= 0:
        return {"sd": sd, "n_test": n_test, "power_80": None, "ci_excludes_0": None}
    return {
        "sd": sd,
        "n_test": n_test,
        "effect": effect,
        "power_80": math.ceil(n_test * ((z_a + z_b) * sd / effect) ** 2),
        "ci_excludes_0": math.ceil(n_test * (z_a * sd / effect) ** 2),
    }


def _load(
    evaluations: Mapping[int, Mapping[str, Path]],
    predictions: Mapping[int, Mapping[str, Path]],
    cfg: EvalConfig,
) -> dict[int, dict[str, dict[str, Any]]]:
    """Evaluations per seed and model, after checking every pair shares records and targets."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    first: dict[str, Predictions] = {}
    names = model_names()
    for seed, per_model in evaluations.items():
        missing = [m for m in names if m not in per_model or m not in predictions[seed]]
        if missing:
            raise ValueError(f"study seed {seed}: evaluations or predictions of {missing} missing")
        preds = {m: load_predictions(Path(predictions[seed][m])) for m in names}
        for m in names:
            ref = first.setdefault(preds[m].task, preds[m])
            check_paired(ref, preds[m])  # same records, labels, targets for every seed
        out[seed] = {m: load_evaluation(Path(per_model[m]), m, preds[m], cfg) for m in names}
    return out


def _est(e: Estimate) -> dict[str, Any]:
    return jsonable(e.as_dict())


def study_summary(evals: Mapping[int, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Per-seed, mean +- sd and pooled values of the macro AUROCs and the comparisons."""
    seeds, names = sorted(evals), model_names()
    macro = {s: {m: macro_point_and_boot(evals[s][m]) for m in names} for s in seeds}
    models = {}
    for m in names:
        points = [macro[s][m][0] for s in seeds]
        models[m] = {
            "per_seed": {str(s): _est(percentile_interval(*macro[s][m])) for s in seeds},
            "mean": float(np.mean(points)),
            "sd": float(np.std(points, ddof=1)) if len(points) > 1 else None,
        }
    comps: dict[str, Any] = {}
    n_test = int(evals[seeds[0]][names[0]]["n_records"])
    for a, b in comparisons():
        diffs = [(macro[s][a][0] - macro[s][b][0], macro[s][a][1] - macro[s][b][1]) for s in seeds]
        pooled = pooled_over_seeds(diffs)
        single_sd = float(np.mean([np.nanstd(d, ddof=1) for _, d in diffs]))
        points = [p for p, _ in diffs]
        comps[f"{a}_minus_{b}"] = {
            "a": a,
            "b": b,
            "per_seed": {
                str(s): _est(percentile_interval(*d)) for s, d in zip(seeds, diffs, strict=True)
            },
            "mean": float(np.mean(points)),
            "sd": float(np.std(points, ddof=1)) if len(points) > 1 else None,
            "pooled": _est(percentile_interval(*pooled)),
            "needed_single_run": needed_records(n_test, single_sd),
            "needed_pooled": needed_records(n_test, float(np.nanstd(pooled[1], ddof=1))),
        }
    trio = ("method_diagnoses", "signal_only", "multimodal_classification")
    per_seed_gap = {str(s): _est(gap_bridged(*(macro[s][m] for m in trio))) for s in seeds}
    pooled_gap = gap_bridged(*(pooled_over_seeds([macro[s][m] for s in seeds]) for m in trio))
    comps["gap_bridged"] = {
        "formula": "(method_diagnoses - signal_only) / (multimodal_classification - signal_only)",
        "per_seed": per_seed_gap,
        "pooled": _est(pooled_gap),
    }
    return {"seeds": seeds, "n_test": n_test, "models": models, "comparisons": comps}


def _ci(e: Mapping[str, Any], spec: str = ".3f") -> str:
    return fmt_range(e, spec)


def _mean_sd(d: Mapping[str, Any], spec: str = ".3f") -> str:
    sd = "" if d["sd"] is None else f" +- {d['sd']:.3f}"
    return f"{d['mean']:{spec}}{sd}"


def study_markdown(summary: Mapping[str, Any], cfg: EvalConfig) -> str:
    seeds = summary["seeds"]
    cols = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        "# Study: Table 1 over training seeds",
        "",
        f"Seeds {seeds}; every training stage re-run per seed (stage seeds = study seed), all "
        f"evaluated on the same {summary['n_test']} test records. Intervals: 95%, {CI_METHOD}; "
        f"{cfg.n_bootstrap} resamples, seed {cfg.seed}, shared by every seed and model. Pooled: "
        "the mean over seeds, its interval from the seed-averaged resamples (test-set "
        "uncertainty; the across-seed sd shows the training noise).",
        "",
        "## Macro AUROC per model",
        "",
        f"| model | {cols} | mean +- sd |",
        "|" + "---|" * (2 + len(seeds)),
    ]
    for m, d in summary["models"].items():
        cells = " | ".join(_ci(d["per_seed"][str(s)]) for s in seeds)
        lines.append(f"| {m} | {cells} | {_mean_sd(d)} |")
    lines += [
        "",
        "## Paired differences in macro AUROC",
        "",
        f"| comparison | {cols} | mean +- sd | pooled (95% CI) |",
        "|" + "---|" * (3 + len(seeds)),
    ]
    comps = summary["comparisons"]
    for key, c in comps.items():
        if key == "gap_bridged":
            continue
        cells = " | ".join(_ci(c["per_seed"][str(s)], "+.3f") for s in seeds)
        lines.append(
            f"| {c['a']} - {c['b']} | {cells} | {_mean_sd(c, '+.3f')} "
            f"| {_ci(c['pooled'], '+.3f')} |"
        )
    g = comps["gap_bridged"]
    lines += [
        "",
        f"Gap bridged, {g['formula']}: pooled {_ci(g['pooled'])}; per seed "
        + ", ".join(f"{s}: {_ci(g['per_seed'][str(s)])}" for s in seeds)
        + " (unstable when the two baselines are close).",
        "",
        *_size_text(comps, summary["n_test"]),
    ]
    return "\n".join(lines) + "\n"


def _size_text(comps: Mapping[str, Any], n_test: int) -> list[str]:
    lines = [
        f"## Test-fold size for an effect of the paper's size (+{PAPER_EFFECT} macro AUROC)",
        "",
        f"From the measured bootstrap SD of each paired difference on {n_test} test records, "
        "scaled by 1/sqrt(n): records needed for a two-sided 5% test to detect the effect with "
        f"{POWER:.0%} power (and for its 95% interval to just exclude 0).",
        "",
        "| comparison | bootstrap SD, one run | records, one run | bootstrap SD, seeds pooled "
        "| records, seeds pooled | across-seed SD |",
        "|---|---|---|---|---|---|",
    ]
    for key, c in comps.items():
        if key == "gap_bridged":
            continue
        cells = [f"{c['a']} - {c['b']}"]
        for need in (c["needed_single_run"], c["needed_pooled"]):
            cells += [f"{need['sd']:.4f}", _records(need)]
        cells.append("-" if c["sd"] is None else f"{c['sd']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "The across-seed SD is training noise: it does not shrink with the test fold (more seeds "
        "average it out: its share of the pooled estimate is SD / sqrt(seeds)).",
    ]
    return [*lines, ""]


def _records(need: Mapping[str, Any]) -> str:
    if need["power_80"] is None:
        return "-"
    ratio = need["power_80"] / need["n_test"]
    return f"{need['power_80']} ({ratio:.1f}x the fold; CI excludes 0 at {need['ci_excludes_0']})"


def _frame(summary: Mapping[str, Any]) -> pl.DataFrame:
    rows = []
    for kind, items in (("macro_auroc", summary["models"]), ("comparison", summary["comparisons"])):
        for name, d in items.items():
            for seed, e in d["per_seed"].items():
                rows.append({"kind": kind, "name": name, "seed": seed, **_row(e)})
            if "pooled" in d:
                rows.append({"kind": kind, "name": name, "seed": "pooled", **_row(d["pooled"])})
            if "mean" in d:
                rows.append(
                    {
                        "kind": kind,
                        "name": name,
                        "seed": "mean",
                        "point": d["mean"],
                        "ci_low": None,
                        "ci_high": None,
                        "sd": d["sd"],
                    }
                )
    return pl.DataFrame(
        rows, schema_overrides={k: pl.Float64 for k in ("point", "ci_low", "ci_high", "sd")}
    )


def _row(e: Mapping[str, Any]) -> dict[str, Any]:
    return {"point": e["point"], "ci_low": e["ci_low"], "ci_high": e["ci_high"], "sd": None}


def study_table(
    evaluations: Mapping[int, Mapping[str, Path]],
    predictions: Mapping[int, Mapping[str, Path]],
    outputs: StudyOutputs,
    cfg: EvalConfig,
) -> dict[str, Any]:
    """Write the study's Table 1 (md, csv, json) from every seed's evaluations.

    Args:
        evaluations: Seed -> model -> evaluation JSON (every registered model).
        predictions: Seed -> model -> predictions ``.npz`` (pairing checks).
        outputs: Where to write.
        cfg: The ``evaluate`` settings every evaluation must have used.

    Returns:
        The summary written to the JSON.
    """
    if not evaluations:
        raise ValueError("the study needs at least one seed")
    summary = jsonable(study_summary(_load(evaluations, predictions, cfg)))
    write_text_atomic(outputs.md, study_markdown(summary, cfg))
    with atomic_path(outputs.csv, suffix=".csv") as tmp:
        _frame(summary).write_csv(tmp)
    write_text_atomic(outputs.json, json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return summary
