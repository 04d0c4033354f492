"""Ids, stay/admission timing and ECG scheduling of the synthetic cohort."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.synth.physiology import DAY

# How far ECG-time acute abnormalities have regressed for ECGs taken after treatment.
_LATER_DECAY = 0.5


@dataclass
class Counters:
    """Running id counters, carried across chunks so ids stay unique and deterministic."""

    stay: int = 0
    hadm: int = 0
    study: int = 0
    specimen: int = 0
    labevent: int = 0

    def take(
        self, rng: np.random.Generator, kind: str, n: int, base: int, stride: int
    ) -> np.ndarray:
        """``n`` unique ids ``base + stride * counter + gap`` (gap < stride)."""
        start = getattr(self, kind)
        setattr(self, kind, start + n)
        return base + stride * np.arange(start, start + n) + rng.integers(0, stride, n)


def assign_stay_ids(rng: np.random.Generator, stays: pl.DataFrame, ctr: Counters) -> pl.DataFrame:
    """Stay ids, ED out-times, and hadm ids / admission times for admitted stays."""
    n = stays.height
    intime = stays["intime"].to_numpy()
    admitted = stays["admitted"].to_numpy()
    ed_len = (rng.gamma(3.0, 1.6, n) * 3600 + 1800).astype(np.int64) // 60 * 60
    outtime = intime + ed_len
    hadm = np.full(n, -1, dtype=np.int64)
    hadm[admitted] = ctr.take(rng, "hadm", int(admitted.sum()), 20_000_000, 97)
    los_days = np.clip(rng.gamma(2.0, 1.5 + stays["severity"].to_numpy().clip(0), n), 0.3, 30)
    admittime = outtime - (rng.random(n) * 1800).astype(np.int64) // 60 * 60
    dischtime = admittime + (los_days * DAY).astype(np.int64) // 60 * 60
    return stays.with_columns(
        pl.Series("stay_id", ctr.take(rng, "stay", n, 30_000_000, 131)),
        pl.Series("outtime", outtime),
        pl.Series("hadm_id", hadm).replace(-1, None),
        pl.Series("admittime", admittime),
        pl.Series("dischtime", dischtime),
        pl.Series("los_days", los_days),
    )


# Acute state columns that regress towards normal in later ECGs of the same stay.
_ACUTE_NORMAL = {"potassium": 4.2, "calcium": 9.3, "sodium": 139.5, "heart_rate": 78.0}


def schedule_ecgs(rng: np.random.Generator, stays: pl.DataFrame, ctr: Counters) -> pl.DataFrame:
    """ECGs with their time, stay link and ECG-time latent state.

    Kinds: ``ed`` (within 90 min of ED intime; sometimes two), ``later`` (same stay,
    after 90 min), ``inpatient`` (during the admission) and ``outpatient`` (no stay, no
    acute problem: another department). Later ECGs carry a partly regressed acute state.
    """
    n = stays.height
    intime = stays["intime"].to_numpy()
    n_ed = (rng.random(n) < 0.93).astype(int) + (rng.random(n) < 0.12)
    n_later = (rng.random(n) < 0.15).astype(int)
    admitted = stays["admitted"].to_numpy()
    n_inp = admitted * (rng.random(n) < 0.3) * (1 + (rng.random(n) < 0.3))
    n_out = (rng.random(n) < 0.1).astype(int)
    parts = []
    for kind, counts in (
        ("ed", n_ed),
        ("later", n_later),
        ("inpatient", n_inp),
        ("outpatient", n_out),
    ):
        counts = np.asarray(counts, dtype=np.int64)
        rows = np.repeat(np.arange(n), counts)
        m = rows.size
        t_in = intime[rows]
        if kind == "ed":
            t = t_in + (rng.uniform(3, 88, m) * 60).astype(np.int64)
        elif kind == "later":
            span = np.maximum(stays["outtime"].to_numpy()[rows] - t_in - 95 * 60, 600)
            t = t_in + 95 * 60 + (rng.random(m) * span).astype(np.int64)
        elif kind == "inpatient":
            adm = stays["admittime"].to_numpy()[rows]
            span = stays["dischtime"].to_numpy()[rows] - adm
            t = adm + (rng.uniform(0.1, 1.0, m) * span).astype(np.int64)
        else:
            t = t_in - (rng.uniform(20, 300, m) * DAY).astype(np.int64)
        parts.append(stays[rows].with_columns(pl.Series("ecg_time", t), pl.lit(kind).alias("kind")))
    ecgs = pl.concat(parts).sort(["subject_id", "ecg_time", "kind"], maintain_order=True)
    ecgs = _regress_acute_state(rng, ecgs)
    ecgs = ecgs.with_columns(
        pl.Series("study_id", ctr.take(rng, "study", ecgs.height, 40_000_000, 53)),
        # Only ED-window and same-stay ECGs belong to a stay; outpatient ECGs to none.
        pl.when(pl.col("kind") == "outpatient")
        .then(None)
        .otherwise(pl.col("stay_id"))
        .alias("ecg_stay_id"),
    )
    return ecgs


def _regress_acute_state(rng: np.random.Generator, ecgs: pl.DataFrame) -> pl.DataFrame:
    kind = ecgs["kind"].to_numpy()
    later = np.isin(kind, ["later", "inpatient"])
    out = kind == "outpatient"
    f = np.where(later, _LATER_DECAY, np.where(out, 0.0, 1.0))
    cols = [
        (
            (pl.col(c) - v) * pl.Series(f) + v + pl.Series(rng.normal(0, 0.05, ecgs.height)) * later
        ).alias(c)
        for c, v in _ACUTE_NORMAL.items()
    ]
    acute_flags = ["sepsis", "ischaemia", "hf_decomp", "stemi"]
    keep = pl.Series(~out & ~(later & (rng.random(ecgs.height) < 0.5)))
    cols += [(pl.col(c) & keep).alias(c) for c in acute_flags]
    cols += [pl.when(keep).then(pl.col("territory")).otherwise(0).alias("territory")]
    # Outpatient ECGs: AF only in persistent AF patients.
    cols += [
        pl.when(pl.Series(out))
        .then(pl.col("af_chronic") & ~pl.col("af_paroxysmal"))
        .otherwise(pl.col("af"))
        .alias("af")
    ]
    return ecgs.with_columns(cols)
