"""Shared helpers for the synthetic-cohort tests: one small generated cohort, beat analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import find_peaks

from pipeline.mimic_schema import FS_HZ, LEADS
from pipeline.synth import SynthConfig, SynthSummary, synthesize_cohort

N_SUBJECTS = 120


def make_cohort(root: Path, seed: int = 0, n_subjects: int = N_SUBJECTS) -> SynthSummary:
    """Generate a cohort under ``root`` (mimic-iv, mimic-iv-ed, mimic-iv-ecg, latent.parquet)."""
    return synthesize_cohort(
        SynthConfig(seed=seed, n_subjects=n_subjects),
        root / "mimic-iv",
        root / "mimic-iv-ed",
        root / "mimic-iv-ecg",
        root / "gt" / "latent.parquet",
    )


def r_peaks(sig: np.ndarray) -> np.ndarray:
    """R-peak sample indices from the summed squared slope of all leads; sig (L, 12) mV."""
    energy = np.convolve(
        (np.diff(np.nan_to_num(sig), axis=0) ** 2).sum(axis=1), np.ones(15) / 15, mode="same"
    )
    peaks, _ = find_peaks(
        energy, height=0.3 * np.percentile(energy, 99.5), distance=int(0.27 * FS_HZ)
    )
    return peaks


def median_beat(
    sig: np.ndarray, peaks: np.ndarray, pre: float = 0.25, post: float = 0.6
) -> np.ndarray:
    """Median beat (W, 12) around R peaks, baseline-corrected at the PR/QRS onset."""
    a, b = int(pre * FS_HZ), int(post * FS_HZ)
    beats = [sig[p - a : p + b] for p in peaks if p - a >= 0 and p + b <= sig.shape[0]]
    med = np.nanmedian(np.stack(beats), axis=0)
    base = np.nanmedian(med[a - int(0.07 * FS_HZ) : a - int(0.05 * FS_HZ)], axis=0)
    return med - base


LEAD = {name: i for i, name in enumerate(LEADS)}
