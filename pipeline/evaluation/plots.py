"""Report figures: per-label AUROC scatter, ROC curves and the lab-abnormality explanations.

Figures are built with matplotlib's object API (``Figure``, rendered by Agg) rather than
pyplot, so no display, backend choice or global figure state is involved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from pipeline.evaluation.predictions import Predictions

_DPI = 120


def _short(name: str, width: int = 38) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def per_label_scatter(
    x_auc: np.ndarray, y_auc: np.ndarray, x_name: str, y_name: str, out: Path
) -> int:
    """Per-label AUROC of two models against each other, with the diagonal.

    Returns the number of labels above the diagonal (better for ``y_name``).
    """
    ok = ~(np.isnan(x_auc) | np.isnan(y_auc))
    x, y = x_auc[ok], y_auc[ok]
    lo = float(min(0.5, x.min(initial=1.0), y.min(initial=1.0))) - 0.02
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([lo, 1], [lo, 1], color="grey", lw=1, ls="--", label="equal AUROC")
    ax.scatter(x, y, s=14, alpha=0.7)
    above = int((y > x).sum())
    ax.set(
        xlim=(lo, 1.0),
        ylim=(lo, 1.0),
        xlabel=f"{x_name} AUROC",
        ylabel=f"{y_name} AUROC",
    )
    ax.set_title(f"Per-label AUROC ({above} of {ok.sum()} labels above the diagonal)", fontsize=10)
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=_DPI)
    return above


def roc_grid(
    models: Mapping[str, Predictions],
    labels: Sequence[str],
    names: Mapping[str, str],
    out: Path,
) -> None:
    """ROC curves of ``labels`` (one panel each) for every model in ``models``."""
    ncols = min(3, max(1, len(labels)))
    nrows = max(1, math.ceil(len(labels) / ncols))
    fig = Figure(figsize=(4 * ncols, 4 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel()[len(labels) :]:
        ax.axis("off")
    for ax, label in zip(axes.ravel(), labels, strict=False):
        for model, pred in models.items():
            k = int(np.flatnonzero(pred.labels == label)[0])
            valid = ~np.isnan(pred.target[:, k])
            fpr, tpr, _ = roc_curve(pred.target[valid, k], pred.prob[valid, k])
            ax.plot(fpr, tpr, lw=1.3, label=model)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set(title=_short(f"{label} {names.get(label, '')}".strip()), xlabel="1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=_DPI)


def lift_heatmap(
    lift: np.ndarray, rows: Sequence[str], cols: Sequence[str], out: Path, max_cols: int = 25
) -> None:
    """log2 lift of predicted lab abnormality among flagged ECGs (rows: diagnoses).

    When there are more than ``max_cols`` lab targets, those with the strongest lift in
    any row are shown.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lift = np.log2(lift)  # (D, L)
    keep = np.arange(len(cols))
    if len(cols) > max_cols:
        strength = np.nan_to_num(np.abs(log_lift), nan=0.0).max(axis=0)
        keep = np.sort(np.argsort(-strength, kind="stable")[:max_cols])
    shown = log_lift[:, keep]
    bound = float(np.nanmax(np.abs(shown), initial=0.0)) or 1.0
    fig = Figure(figsize=(max(7.0, 3.5 + 0.42 * len(keep)), 2.4 + 0.4 * len(rows)))
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(
        range(len(keep)), [cols[int(i)] for i in keep], rotation=70, ha="right", fontsize=7
    )
    ax.set_yticks(range(len(rows)), [_short(r, 45) for r in rows], fontsize=7)
    ax.set_title(
        "Predicted lab abnormality among the top decile of each diagnosis score\n"
        "(log2 of mean predicted probability, flagged vs other ECGs)",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, label="log2 lift")
    fig.tight_layout()
    fig.savefig(out, dpi=_DPI)
