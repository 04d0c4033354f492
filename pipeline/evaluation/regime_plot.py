"""The regime map's figure: paired differences against the label fraction, one line per world.

A grid of panels, label groups (all labels first) down, comparisons across; each point is a
cell's pooled paired difference in macro AUROC with its 95 % interval. Matplotlib's object
API (no pyplot), as in pipeline/evaluation/plots.py.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from pipeline.io import atomic_path

_DPI = 120


def regime_plot(frame: pl.DataFrame, out: Path) -> None:
    """Draw the regime map (rows of pipeline.evaluation.regime.regime_frame) to ``out``."""
    diffs = frame.filter(pl.col("kind") == "difference")
    comps = diffs["name"].unique(maintain_order=True).to_list()
    groups = diffs["group"].unique(maintain_order=True).to_list()
    worlds = diffs["world"].unique(maintain_order=True).to_list()
    fig = Figure(figsize=(4 * len(comps), 2.8 * len(groups)))
    axes = fig.subplots(len(groups), len(comps), squeeze=False, sharex=True)
    for i, group in enumerate(groups):
        for j, comp in enumerate(comps):
            ax = axes[i][j]
            ax.axhline(0, color="grey", lw=1, ls="--")
            for k, world in enumerate(worlds):
                sub = diffs.filter(
                    (pl.col("group") == group)
                    & (pl.col("name") == comp)
                    & (pl.col("world") == world)
                ).sort("label_fraction")
                x = sub["label_fraction"].to_numpy() * (1 + 0.04 * (k - (len(worlds) - 1) / 2))
                y = sub["point"].to_numpy()
                err = [y - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - y]
                ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=world)
            ax.set_xscale("log")
            ax.set_title(f"{comp}\n{group} labels", fontsize=9)
            if j == 0:
                ax.set_ylabel("difference in macro AUROC")
            if i == len(groups) - 1:
                ax.set_xlabel("label fraction")
    axes[0][0].legend(title="world", fontsize=8)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=_DPI)
