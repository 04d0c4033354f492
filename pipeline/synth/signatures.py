"""Weak ECG signatures of age, sex, anaemia and renal disease (world "realistic").

Deep networks read from the 12-lead ECG what the world "null" hides from it: age
(predicted age R^2 = 0.7, i.e. r ~ 0.84; Attia et al. 2019, Circ Arrhythm Electrophysiol
12:e007284), sex (AUC 0.97, same study), anaemia (Hb <= 10 g/dL, AUC 0.85 internal / 0.82
external; Yang et al. 2025, Intern Emerg Med; Kwon et al. 2020, Lancet Digit Health
2:e358, reports the same task) and chronic kidney disease (AUC 0.767, 0.783 for ESRD;
Holmstrom et al. 2023, Commun Med 3:73). The mechanisms are classical ECG physiology: with
age the PR interval lengthens, the QRS axis turns left, voltages and T waves fall and
sinus arrhythmia fades; men have larger QRS voltage, longer QRS, taller T waves and J-point
elevation in V1-V3; anaemia raises the heart rate and flattens T; CKD brings left
ventricular hypertrophy (voltage, QRS width, strain T, longer QTc).

The directions are from the literature; the sizes are ours, chosen so that the signatures
are weak (each shifts a parameter by a fraction of its spread) and an individual noise
term caps what a perfect reader could recover: the waveform expresses a "cardiac age"
that differs from the real one by N(0, 10.5 y), so age can be read with r <= ~0.84 as in
Attia et al. The parameters modified are those of :func:`pipeline.synth.ecg.ecg_params`
plus ``j_mv`` (anterior J-point elevation, drawn by :func:`pipeline.synth.ecg.dipole`).
"""

from __future__ import annotations

import numpy as np
import polars as pl

CARDIAC_AGE_SD = 10.5  # years: r(age, cardiac age) = 16 / sqrt(16^2 + 10.5^2) ~ 0.84
_LVH = {3: 0.4, 4: 0.7, 5: 1.0}  # LVH strength by CKD stage
VOLTAGE_MAX = 1.6  # the null world's largest amplitude factor (tiny cohort: 1.59)


def add_signatures(
    params: pl.DataFrame, ecgs: pl.DataFrame, rng: np.random.Generator
) -> pl.DataFrame:
    """``params`` (one row per ECG, as ecg_params returns it) with the signatures added."""
    n = ecgs.height
    g = {c: ecgs[c].to_numpy() for c in ("age", "female", "hemoglobin", "ckd_stage")}
    p = {c: params[c].to_numpy().astype(float) for c in params.columns if c != "study_id"}
    a = (g["age"] + rng.normal(0, CARDIAC_AGE_SD, n) - 60.0) / 15.0  # cardiac age, std units
    male = (~g["female"].astype(bool)) * np.clip(rng.normal(1.0, 0.3, n), 0, None)
    hb_deficit = np.clip(13.5 - g["hemoglobin"], 0, None)  # g/dL below normal
    lvh = np.vectorize(lambda s: _LVH.get(int(s), 0.0))(g["ckd_stage"]) * rng.uniform(0.5, 1.5, n)
    rr_old = 60.0 / p["ecg_heart_rate"]
    hr = np.clip(p["ecg_heart_rate"] - 3.0 * male + 2.5 * hb_deficit, 40, 180)
    rr = 60.0 / hr
    # QTc shifts (s): age, anaemia, LVH; QT = QTc sqrt(RR) re-expressed at the new rate.
    dqtc = 0.005 * a + 0.005 * hb_deficit + 0.012 * lvh
    qt = np.clip(p["qt_s"] / np.sqrt(rr_old) * np.sqrt(rr) + dqtc * np.sqrt(rr), 0.24, 0.64)
    # Centred on the sexes and capped at the null world's largest voltage, so the +-3 mV
    # input clip (shard.clip_mv) touches no more records than in the null world.
    sex_v = 0.06 * male - 0.06 * g["female"].astype(bool)
    voltage = np.minimum(p["voltage"] * np.exp(-0.07 * a + sex_v + 0.15 * lvh), VOLTAGE_MAX)
    t_amp = p["t_amp"] * np.exp(-0.08 * a + 0.15 * male - 0.08 * hb_deficit - 0.3 * lvh)
    sinus = ~p["af"].astype(bool)
    rr_cv = np.where(sinus, p["rr_cv"] * np.exp(-0.35 * a), p["rr_cv"])
    return params.with_columns(
        pl.Series("ecg_heart_rate", hr),
        pl.Series("rr_cv", rr_cv),
        pl.Series("pr_s", np.clip(p["pr_s"] + 0.008 * a, 0.10, 0.28)),
        pl.Series("qrs_s", p["qrs_s"] + 0.006 * male + 0.008 * lvh),
        pl.Series("qt_s", qt),
        pl.Series("t_amp", t_amp),
        pl.Series("voltage", voltage),
        pl.Series("qrs_axis_deg", p["qrs_axis_deg"] - 8.0 * a - 10.0 * lvh),
        pl.Series("t_axis_deg", p["t_axis_deg"] - 8.0 * a - 40.0 * lvh),
        pl.Series("j_mv", 0.06 * male),
    )
