"""Latent clinical state of the synthetic cohort (see docs/synthetic_cohort.md).

Patients carry chronic conditions (renal disease, heart failure, atrial fibrillation,
bundle-branch block, anaemia, ...); every ED stay draws acute problems (ischaemia with a
territory, sepsis, acute kidney injury, electrolyte disturbances) on top. The resulting
continuous state (potassium, calcium, creatinine, haemoglobin, ...) drives the labs,
vitals, ICD codes and the ECG morphology, so the couplings the method relies on exist.
All functions are vectorised over patients or stays.
"""

from __future__ import annotations

import numpy as np
import polars as pl

DAY = 86_400
YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")
COMPLAINTS = ("Chest pain", "Dyspnea", "Syncope", "Fever", "Weakness", "Abd pain", "Fall")
TERRITORIES = ("none", "anterior", "inferior", "lateral")
BBB = ("none", "LBBB", "RBBB")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _year_start(years: np.ndarray) -> np.ndarray:
    """Seconds since 1970 of 1 January of each year (vectorised)."""
    days = (years.astype("int64") - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return days.astype("int64") * DAY


def simulate_subjects(rng: np.random.Generator, first_index: int, n: int) -> pl.DataFrame:
    """Demographics, body size and chronic conditions of ``n`` patients.

    Subject ids are ``10000000 + 7 * index + gap`` so they are unique across chunks.
    """
    idx = np.arange(first_index, first_index + n)
    female = rng.random(n) < 0.52
    age = np.clip(18 + rng.beta(2.2, 1.5, n) * 75, 18, 91).astype(np.int64)
    a = (age - 60) / 15.0  # age in standard units: older patients are sicker
    height = np.where(female, rng.normal(162, 6.5, n), rng.normal(176, 7.0, n))
    bmi = np.clip(np.exp(rng.normal(np.log(28.0), 0.2, n)), 15, 60)
    ckd_p = _sigmoid(-2.2 + 0.7 * a)
    ckd = rng.random(n) < ckd_p
    stage = np.where(ckd, rng.choice([3, 4, 5], n, p=[0.6, 0.25, 0.15]), 0)
    hf = rng.random(n) < _sigmoid(-2.0 + 0.8 * a + 0.6 * ckd)
    af = rng.random(n) < _sigmoid(-2.4 + 0.9 * a + 0.7 * hf)
    bbb_draw = rng.random(n)
    lbbb = bbb_draw < 0.05 + 0.08 * hf
    rbbb = ~lbbb & (bbb_draw > 1 - (0.05 + 0.02 * (age > 70)))
    diabetes = rng.random(n) < _sigmoid(-1.6 + 0.3 * a + 0.08 * (bmi - 28))
    cad = rng.random(n) < _sigmoid(-1.6 + 0.7 * a + 0.4 * diabetes)
    return pl.DataFrame(
        {
            "subject_id": 10_000_000 + 7 * idx + rng.integers(0, 7, n),
            "female": female,
            "anchor_age": age,
            "anchor_year": rng.integers(2110, 2200, n),
            "year_group": rng.integers(0, len(YEAR_GROUPS), n),
            "height_cm": height,
            "bmi": bmi,
            "ckd_stage": stage,
            "hf": hf,
            "hf_systolic": hf & (rng.random(n) < 0.5),
            "af_chronic": af,
            "af_paroxysmal": af & (rng.random(n) < 0.35),
            "bbb": np.where(lbbb, 1, np.where(rbbb, 2, 0)),
            "hypertension": rng.random(n) < _sigmoid(0.2 + 0.6 * a + 0.5 * ckd),
            "hyperlipidemia": rng.random(n) < _sigmoid(-0.7 + 0.4 * a),
            "diabetes": diabetes,
            "insulin": diabetes & (rng.random(n) < 0.35),
            "cad": cad,
            "copd": rng.random(n) < 0.09,
            "smoker": rng.random(n) < 0.3,
            "anaemia_chronic": rng.random(n) < 0.10 + 0.25 * ckd,
            "dies": rng.random(n) < 0.08 + 0.1 * hf,
            "n_stays": 1 + rng.poisson(1.3 + 0.5 * hf + 0.4 * ckd + 0.3 * (age > 70)),
        }
    )


def simulate_stays(rng: np.random.Generator, subjects: pl.DataFrame) -> pl.DataFrame:
    """One row per ED stay with its time, acute problems and continuous latent state."""
    st = subjects.select(
        pl.all().gather(np.repeat(np.arange(subjects.height), subjects["n_stays"]))
    )
    n = st.height
    # Stays spread over 4 years from the anchor year, >= 3 days apart within a patient.
    st = st.with_columns(pl.Series("offset", rng.random(n) * 4 * 365 * DAY)).sort(
        ["subject_id", "offset"], maintain_order=True
    )
    st = st.with_columns(pl.col("offset") + pl.int_range(pl.len()).over("subject_id") * 3 * DAY)
    col = {c: st[c].to_numpy() for c in st.columns}
    offs = col["offset"]
    intime = _year_start(col["anchor_year"]) + (offs // 60).astype(np.int64) * 60
    age = col["anchor_age"] + (offs // (365 * DAY)).astype(np.int64)
    complaint = rng.choice(len(COMPLAINTS), n, p=[0.26, 0.15, 0.09, 0.14, 0.18, 0.1, 0.08])
    chest, dysp, fever = complaint == 0, complaint == 1, complaint == 3
    a = (age - 60) / 15.0
    renal_chronic = np.select(
        [col["ckd_stage"] == 3, col["ckd_stage"] == 4, col["ckd_stage"] == 5],
        [0.35, 0.6, 0.88],
        0.0,
    )
    sepsis = rng.random(n) < 0.05 + 0.4 * fever + 0.03 * a.clip(0)
    pneumonia = (sepsis | (dysp & (rng.random(n) < 0.2))) & (rng.random(n) < 0.5)
    uti = sepsis & ~pneumonia | (rng.random(n) < 0.04)
    isch = rng.random(n) < 0.04 + 0.22 * chest + 0.08 * col["cad"]
    territory = np.where(isch, rng.choice([1, 2, 3], n, p=[0.4, 0.4, 0.2]), 0)
    stemi = isch & (rng.random(n) < 0.35)
    aki = rng.random(n) < 0.05 + 0.3 * sepsis + 0.12 * (renal_chronic > 0)
    renal = np.clip(renal_chronic + 0.35 * aki * (1 - renal_chronic), 0, 0.92)
    af_now = (col["af_chronic"] & (rng.random(n) < np.where(col["af_paroxysmal"], 0.4, 0.9))) | (
        rng.random(n) < 0.02 + 0.05 * sepsis
    )
    hf_decomp = col["hf"] & (rng.random(n) < 0.25 + 0.3 * dysp)
    anaemia = np.clip(
        col["anaemia_chronic"] * rng.uniform(0.3, 1.0, n)
        + (rng.random(n) < 0.05) * rng.uniform(0.5, 1.5, n),
        0,
        2,
    )
    female = col["female"]
    # --- continuous state (units as the lab reports them) ---
    creat_base = np.where(female, 0.75, 0.95) * np.exp(rng.normal(0, 0.15, n))
    creatinine = creat_base / (1 - renal)
    hyperk = rng.random(n) < 0.16 + 0.25 * renal
    hypok = ~hyperk & (rng.random(n) < 0.07)
    potassium = (
        4.1
        + 1.0 * renal
        + 0.15 * col["diabetes"]
        + rng.normal(0, 0.35, n)
        + hyperk * rng.uniform(0.8, 2.2, n)
        - hypok * rng.uniform(0.6, 1.4, n)
    )
    albumin = 4.0 - 0.7 * sepsis - 0.3 * renal - 0.2 * hf_decomp + rng.normal(0, 0.35, n)
    hypoca = rng.random(n) < 0.12
    calcium = (
        9.3
        + 0.8 * (albumin - 4.0)
        - 0.6 * renal
        + rng.normal(0, 0.35, n)
        - hypoca * rng.uniform(0.8, 1.8, n)
    )
    hemoglobin = (
        np.where(female, 13.4, 15.0)
        - 2.6 * anaemia
        - 2.5 * renal
        - 0.6 * sepsis
        + rng.normal(0, 1.1, n)
    )
    hypona = rng.random(n) < 0.18 + 0.1 * hf_decomp
    sodium = 139.5 + rng.normal(0, 2.8, n) - hypona * rng.uniform(5, 14, n) - 1.5 * hf_decomp
    trop_base = 0.006 * np.exp(rng.normal(0, 0.5, n)) * (1 + 8 * renal**2) * (1 + 1.5 * col["hf"])
    troponin = trop_base + isch * np.exp(rng.normal(np.log(0.25), 1.1, n)) * (1 + 3 * stemi)
    severity = (
        1.2 * sepsis
        + 1.2 * isch
        + 0.9 * hf_decomp
        + 0.8 * aki
        + 0.4 * af_now
        + 0.6 * (np.abs(potassium - 4.3) > 1.0)
        + 0.5 * (sodium < 130)
        + 0.2 * a
        + rng.normal(0, 0.4, n)
    )
    hr = 76 + 22 * sepsis + 24 * af_now + 10 * hf_decomp + 6 * pneumonia + rng.normal(0, 11, n)
    return st.with_columns(
        pl.Series("intime", intime),
        pl.Series("age", age),
        pl.Series("complaint", complaint),
        pl.Series("sepsis", sepsis),
        pl.Series("pneumonia", pneumonia),
        pl.Series("uti", uti),
        pl.Series("ischaemia", isch),
        pl.Series("territory", territory),
        pl.Series("stemi", stemi),
        pl.Series("aki", aki),
        pl.Series("renal", renal),
        pl.Series("af", af_now),
        pl.Series("hf_decomp", hf_decomp),
        pl.Series("anaemia", anaemia),
        pl.Series("creatinine", creatinine),
        pl.Series("potassium", np.clip(potassium, 2.2, 8.0)),
        pl.Series("albumin", np.clip(albumin, 1.5, 5.2)),
        pl.Series("calcium", np.clip(calcium, 6.0, 12.5)),
        pl.Series("hemoglobin", np.clip(hemoglobin, 5.0, 19.0)),
        pl.Series("sodium", np.clip(sodium, 115, 155)),
        pl.Series("troponin", troponin),
        pl.Series("severity", severity),
        pl.Series("heart_rate", np.clip(hr, 42, 175)),
        pl.Series(
            "sbp",
            np.clip(132 + 10 * col["hypertension"] - 24 * sepsis + rng.normal(0, 18, n), 70, 230),
        ),
        pl.Series("temp_f", 98.2 + 2.6 * sepsis + rng.normal(0, 0.5, n)),
        pl.Series(
            "resprate",
            np.clip(16 + 5 * sepsis + 5 * hf_decomp + 3 * pneumonia + rng.normal(0, 2, n), 10, 40),
        ),
        pl.Series(
            "o2sat",
            np.clip(
                98 - 3 * col["copd"] - 4 * pneumonia - 3 * hf_decomp + rng.normal(0, 1.2, n),
                75,
                100,
            ),
        ),
        pl.Series("admitted", rng.random(n) < _sigmoid(-1.0 + 1.3 * severity)),
        pl.Series("icd9", (col["year_group"] == 0) & (offs < 1.5 * 365 * DAY)),
    )
