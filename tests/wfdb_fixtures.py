"""Small MIMIC-IV-ECG-format WFDB records and cohort tables for the shard/split tests.

Records are written with ``wfdb.wrsamp`` exactly as the release stores them: int16
``d_signal``, format 16, gain 200 adu/mV, baseline 0, 500 Hz, 5000 samples, header lead
order :data:`pipeline.mimic_schema.LEADS`, files under ``files/p<4>/p<subject>/s<study>/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import wfdb

from pipeline.mimic_schema import ADC_GAIN, FS_HZ, LEADS, MISSING_ADC, N_SAMPLES

BASE_TIME = datetime(2180, 7, 23, 8, 44, 0)


def record_path(subject_id: int, study_id: int) -> str:
    """record_list.path as in the full release (no extension)."""
    return f"files/p{str(subject_id)[:4]}/p{subject_id}/s{study_id}/{study_id}"


def ecg_digital(rng: np.random.Generator, n: int = N_SAMPLES) -> np.ndarray:
    """A plausible (n, 12) int16 ECG: a few sinusoids plus noise, about +-2 mV."""
    t = np.arange(n) / FS_HZ
    hr = rng.uniform(0.8, 1.8)
    base = np.sin(2 * np.pi * hr * t) ** 15 * rng.uniform(0.5, 2.0)  # QRS-like spikes (mV)
    leads = [
        base * rng.uniform(-1.2, 1.2) + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
        for _ in LEADS
    ]
    mv = np.stack(leads, axis=1) + rng.normal(0, 0.02, (n, len(LEADS)))
    return np.round(mv * ADC_GAIN).astype(np.int16)


def write_record(
    root: Path,
    subject_id: int,
    study_id: int,
    d_signal: np.ndarray,
    *,
    leads: Sequence[str] = LEADS,
    fs: int = FS_HZ,
    when: datetime = BASE_TIME,
) -> str:
    """Write one record under ``root`` and return its record_list path."""
    rel = record_path(subject_id, study_id)
    out = root / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    n_sig = d_signal.shape[1]
    wfdb.wrsamp(
        str(study_id),
        fs=fs,
        units=["mV"] * n_sig,
        sig_name=list(leads),
        d_signal=d_signal,
        fmt=["16"] * n_sig,
        adc_gain=[ADC_GAIN] * n_sig,
        baseline=[0] * n_sig,
        comments=[f"{subject_id}: {subject_id}"],
        base_time=when.time(),
        base_date=when.date(),
        write_dir=str(out.parent),
    )
    return rel


def make_cohort(
    root: Path, n: int, seed: int = 0, first_study: int = 40000000
) -> tuple[pl.DataFrame, dict[int, np.ndarray]]:
    """Write ``n`` valid records; return a cohort frame and the int16 signals by study_id.

    Subjects have 1-3 ECGs each, one ED stay per subject (first ECG = first_in_stay).
    """
    rng = np.random.default_rng(seed)
    rows, signals = [], {}
    subject, k = 10000000 + seed * 1000, 0
    while k < n:
        subject += 1
        for j in range(min(int(rng.integers(1, 4)), n - k)):
            study = first_study + k
            d = ecg_digital(rng)
            when = BASE_TIME + timedelta(days=int(subject % 97), minutes=10 * j)
            path = write_record(root, subject, study, d, when=when)
            rows.append((study, subject, 30000000 + subject, when, path, j == 0))
            signals[study] = d
            k += 1
    cohort = pl.DataFrame(
        rows,
        schema={
            "study_id": pl.Int64,
            "subject_id": pl.Int64,
            "stay_id": pl.Int64,
            "ecg_time": pl.Datetime("us"),
            "path": pl.Utf8,
            "first_in_stay": pl.Boolean,
        },
        orient="row",
    ).with_columns(
        hadm_id=pl.lit(None, pl.Int64),
        intime=pl.col("ecg_time") - pl.duration(minutes=30),
        age=(40.0 + pl.col("subject_id") % 50).cast(pl.Float64),
        gender=pl.when(pl.col("subject_id") % 2 == 0).then(pl.lit("F")).otherwise(pl.lit("M")),
    )
    return cohort, signals


def to_mv(d: np.ndarray) -> np.ndarray:
    """int16 (T, 12) -> float (12, T) mV with NaN for the missing code, like wfdb."""
    x = d.astype(np.float64).T / ADC_GAIN
    x[d.T == MISSING_ADC] = np.nan
    return x
