"""probe.md, probe.csv and the variables x encoders heatmap of the probe stage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from pipeline.evaluation.evaluate import CI_METHOD
from pipeline.evaluation.probe_fit import ProbeScore, Variable, paired
from pipeline.io import atomic_path, write_text_atomic
from pipeline.metrics import Estimate
from pipeline.registry import models

# The encoders that are not registered models: the untrained one and the stage-1 ones.
STAGE1_TITLES = {
    "random_init": "untrained (random init)",
    "pretrain": "stage 1 (ECG vs tabular)",
    "pretrain_ecg_only": "stage 1, ECG only (two crops)",
}
# What stage 1 adds over no training, and over self-supervision without clinical data.
STAGE1_CONTRASTS = (("pretrain", "random_init"), ("pretrain", "pretrain_ecg_only"))


def titles() -> dict[str, str]:
    """Encoder name -> column title: the stage-1 ones, then each model's registry label."""
    return STAGE1_TITLES | {name: spec.label or name for name, spec in models().items()}


def contrasts() -> tuple[tuple[str, str], ...]:
    """Paired differences shown next to the scores: the stage-1 ones, then for every probed
    model its first registry comparison with another probed encoder."""
    out = list(STAGE1_CONTRASTS)
    for name, spec in models().items():
        refs = [r for r in spec.compare if models()[r].probe] if spec.probe else []
        out += [(name, refs[0])] if refs else []
    return tuple(out)


SECTIONS = (
    ("lab value", "Lab values from the feature table (ridge, test R2)"),
    ("lab flag", "Lab abnormality flags, the lab targets (logistic, test AUROC)"),
    ("ground truth", "Synthetic ground truth: latent physiology (values R2, flags AUROC)"),
)


@dataclass(frozen=True)
class ProbeOutputs:
    """Where the probe stage writes (P["probe_md"], P["probe_csv"], P["probe_plot"])."""

    md: Path
    csv: Path
    plot: Path


def _metric(v: Variable) -> str:
    return "r2" if v.kind == "value" else "auroc"


def score_frame(
    variables: Sequence[Variable], scores: Mapping[str, Sequence[ProbeScore]]
) -> pl.DataFrame:
    """Long table: one row per (variable, encoder)."""
    rows = []
    for enc, per_var in scores.items():
        for v, s in zip(variables, per_var, strict=True):
            e = s.estimate
            rows.append(
                {
                    "source": v.source,
                    "variable": v.name,
                    "metric": _metric(v),
                    "encoder": enc,
                    "score": e.point,
                    "ci_low": e.low,
                    "ci_high": e.high,
                    "n_resamples": e.n_resamples,
                    "n_train": s.n_train,
                    "n_test": s.n_test,
                    "transform": s.transform,
                    "hyperparameter": s.hyper,
                    "status": s.status,
                }
            )
    return pl.DataFrame(rows, nan_to_null=True)


def _fmt(e: Estimate | None, sign: str = "") -> str:
    if e is None or np.isnan(e.point):
        return "-"
    spec = f"{sign}.3f"
    if np.isnan(e.low):
        return format(e.point, spec)
    return f"{e.point:{spec}} ({e.low:{spec}} to {e.high:{spec}})"


def _table(
    idx: list[int], variables: Sequence[Variable], scores: Mapping[str, Sequence[ProbeScore]]
) -> list[str]:
    encs = list(scores)
    names = titles()
    shown = [(a, b) for a, b in contrasts() if a in scores and b in scores]
    head = ["variable", "metric", "n test", *[names.get(e, e) for e in encs]]
    head += [f"{names.get(a, a)} - {names.get(b, b)}" for a, b in shown]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i in idx:
        v, first = variables[i], scores[encs[0]][i]
        cells = [v.name + (" (log)" if first.transform == "log" else ""), _metric(v)]
        cells.append(str(first.n_test))
        cells += [
            _fmt(scores[e][i].estimate) if scores[e][i].status == "ok" else "skipped" for e in encs
        ]
        cells += [_fmt(paired(scores[a][i], scores[b][i]), "+") for a, b in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_table(frame: pl.DataFrame) -> list[str]:
    """Markdown rows: mean score per encoder over the variables every encoder was probed on."""
    encs = list(dict.fromkeys(frame["encoder"].to_list()))
    lines = [
        "| variables | metric | n | " + " | ".join(titles().get(e, e) for e in encs) + " |",
        "|" + "---|" * (3 + len(encs)),
    ]
    ok = frame.with_columns(
        (pl.col("status") == "ok").all().over("source", "variable").alias("all_ok")
    ).filter(pl.col("all_ok"))
    for source, _ in SECTIONS:
        for metric in ("r2", "auroc"):
            part = ok.filter((pl.col("source") == source) & (pl.col("metric") == metric))
            if part.is_empty():
                continue
            means = dict(part.group_by("encoder").agg(pl.col("score").mean()).iter_rows())
            n = part["variable"].n_unique()
            cells = " | ".join(f"{means[e]:.3f}" for e in encs)
            lines.append(f"| {source} | mean {metric.upper()} | {n} | {cells} |")
    return lines


def probe_markdown(
    variables: Sequence[Variable],
    scores: Mapping[str, Sequence[ProbeScore]],
    notes: Sequence[str],
    n_bootstrap: int,
    plot_rel: str,
) -> str:
    first = next(iter(scores.values()))
    n_train = max((s.n_train for s in first), default=0)
    lines = [
        "# Probe: clinical knowledge in the frozen ECG embeddings",
        "",
        "Linear probes on frozen, crop-averaged embeddings: fitted on the training records "
        "(hyper-parameter chosen on validation), scored on the test records. Values: ridge "
        "on standardised embeddings, R2 (log scale where marked); flags: logistic "
        f"regression, AUROC. Up to {n_train} training records per variable. Intervals: 95%, "
        f"{CI_METHOD}; {n_bootstrap} resamples, shared by all encoders (paired differences).",
        "",
        "## Summary",
        "",
        *summary_table(score_frame(variables, scores)),
        "",
        f"![probe heatmap]({plot_rel})",
        "",
    ]
    for source, title in SECTIONS:
        idx = [i for i, v in enumerate(variables) if v.source == source]
        if idx:
            lines += [f"## {title}", "", *_table(idx, variables, scores), ""]
    skipped = sorted(
        {
            f"{v.name}: {s.status}"
            for e in scores
            for v, s in zip(variables, scores[e], strict=True)
            if s.status != "ok"
        }
    )
    if skipped or notes:
        lines += ["## Not probed", "", *[f"- {n}" for n in (*notes, *skipped)], ""]
    return "\n".join(lines)


def heatmap(
    variables: Sequence[Variable], scores: Mapping[str, Sequence[ProbeScore]], out: Path
) -> None:
    """Variables x encoders, one panel per (source, metric); R2 on [0, 1], AUROC on [0.5, 1]."""
    encs = list(scores)
    panels = []
    for source, _ in SECTIONS:
        for kind, lo in (("value", 0.0), ("flag", 0.5)):
            idx = [i for i, v in enumerate(variables) if v.source == source and v.kind == kind]
            if idx:
                panels.append((f"{source} ({'R2' if kind == 'value' else 'AUROC'})", idx, lo))
    if not panels:
        panels = [("nothing probed", [], 0.0)]
    heights = [max(len(idx), 1) for _, idx, _ in panels]
    fig = Figure(figsize=(2.2 + 1.3 * len(encs), 1.2 + 0.28 * sum(heights) + 0.5 * len(panels)))
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    for ax, (title, idx, lo) in zip(axes, panels, strict=True):
        m = np.array([[scores[e][i].estimate.point for e in encs] for i in idx]).reshape(
            len(idx), len(encs)
        )
        image = ax.imshow(np.clip(m, lo, 1.0), vmin=lo, vmax=1.0, cmap="viridis", aspect="auto")
        for (r, c), val in np.ndenumerate(m):
            if not np.isnan(val):
                ax.text(
                    c,
                    r,
                    f"{val:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w" if val < (lo + 1) / 2 else "k",
                )
        ax.set_yticks(range(len(idx)), [variables[i].name for i in idx], fontsize=7)
        names = titles()
        ax.set_xticks(range(len(encs)), [names.get(e, e) for e in encs], fontsize=7, rotation=30)
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)


def write_outputs(
    variables: Sequence[Variable],
    scores: Mapping[str, Sequence[ProbeScore]],
    notes: Sequence[str],
    outputs: ProbeOutputs,
    *,
    n_bootstrap: int,
) -> pl.DataFrame:
    """Write probe.csv, the heatmap and probe.md; return the score table."""
    frame = score_frame(variables, scores)
    with atomic_path(outputs.csv, suffix=".csv") as tmp:
        frame.write_csv(tmp)
    heatmap(variables, scores, outputs.plot)
    import os

    rel = os.path.relpath(outputs.plot, Path(outputs.md).parent)
    write_text_atomic(outputs.md, probe_markdown(variables, scores, notes, n_bootstrap, rel))
    return frame
