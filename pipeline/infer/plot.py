"""A 12-lead figure of one record with its explanation panel.

Left: the 12 leads as the model saw them (after resampling and clipping), the evaluation
crops shaded. Right: the top diagnoses and the predicted lab abnormalities as bars.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt
import numpy as np

from pipeline.data.preprocessing import Preprocessing
from pipeline.infer.explain import Explanation
from pipeline.io import atomic_path

_CROP_COLOUR = "#f2e6c9"


def _bars(ax: plt.Axes, title: str, items: list[tuple[str, float]], colour: str) -> None:
    labels = [name for name, _ in items][::-1]
    values = [p for _, p in items][::-1]
    ax.barh(range(len(items)), values, color=colour)
    ax.set_yticks(range(len(items)), labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(axis="x", labelsize=7)
    for y, v in enumerate(values):
        ax.text(min(v + 0.02, 0.85), y, f"{v:.2f}", va="center", fontsize=7)


def plot_record(
    x: np.ndarray, explanation: Explanation, prep: Preprocessing, out: Path, top: int = 5
) -> Path:
    """Write the figure of one record (``x``: (12, n_samples) mV at ``prep.fs``) to ``out``."""
    from pipeline.data.preprocessing import crop_starts

    t = np.arange(x.shape[-1]) / prep.fs
    fig = plt.figure(figsize=(14, 9))
    grid = fig.add_gridspec(len(prep.leads), 2, width_ratios=(3, 1.3), hspace=0.15, wspace=0.35)
    starts = crop_starts(x.shape[-1], int(prep.crop_samples or 0), int(prep.eval_crops or 0))
    for i, lead in enumerate(prep.leads):
        ax = fig.add_subplot(grid[i, 0])
        for s in starts:
            ax.axvspan(s / prep.fs, (s + int(prep.crop_samples or 0)) / prep.fs, color=_CROP_COLOUR)
        ax.plot(t, x[i], lw=0.7, color="black")
        ax.set_ylabel(lead, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
        ax.set_xlim(t[0], t[-1])
        if i < len(prep.leads) - 1:
            ax.set_xticks([])
        else:
            ax.set_xlabel("time (s); shaded: the crops the model averages", fontsize=8)
    half = len(prep.leads) // 2
    dx = [(f"{f.label} {f.name}"[:40], f.probability) for f in explanation.diagnoses[:top]]
    labs = [(f.label, f.probability) for f in explanation.lab_abnormalities[:top]]
    _bars(fig.add_subplot(grid[:half, 1]), "top diagnoses", dx, "#4c72b0")
    _bars(fig.add_subplot(grid[half:, 1]), "predicted lab abnormalities", labs, "#dd8452")
    fig.suptitle(f"{Path(explanation.record).name}: ECG-only diagnoses and lab explanations")
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
