"""12-lead ECG waveforms from a rotating cardiac dipole (see docs/synthetic_cohort.md).

Each beat is a sum of Gaussian-shaped waves (P, septal Q, R, S, terminal R' in RBBB, ST
plateau, T, U), each carrying a 3-D dipole vector (x left, y inferior, z anterior), in
the spirit of McSharry et al. 2003 (IEEE TBME 50:289) and its vectorcardiographic
extension (Sameni et al. 2007). The dipole is projected onto nine electrode potentials
(RA, LA, LL, V1-V6); the 12 leads are formed from the electrodes as an ECG machine
does, so Einthoven (III = II - I) and Goldberger (aVR = -(I+II)/2, aVL = I - II/2,
aVF = II - I/2) hold exactly before int16 quantisation. Electrode noise, baseline
wander and mains hum are added per electrode.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.mimic_schema import ADC_GAIN, FS_HZ, LEADS, N_SAMPLES

T = np.arange(N_SAMPLES) / FS_HZ  # (L,) seconds
_R3 = np.sqrt(3.0) / 2
# Electrode lead vectors (rows: RA, LA, LL, V1..V6; cols: x, y, z). Limb electrodes sum
# to zero so Wilson's central terminal carries no dipole signal.
_ELECTRODES = np.array(
    [[-0.5, -_R3 / 3, 0.0], [0.5, -_R3 / 3, 0.0], [0.0, 2 * _R3 / 3, 0.0]]
    + [[1.3 * np.cos(a), 0.1, 1.3 * np.sin(a)] for a in np.radians([115, 95, 75, 60, 30, 0])]
)
_TERRITORY = np.array([[0.0, 0.0, 0.0], [0.25, -0.1, 1.0], [0.0, 1.0, -0.1], [1.0, -0.4, 0.2]])


def ecg_params(ecgs: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """ECG-level parameters (one row per ECG) derived from the latent state.

    Returns columns heart_rate, rr_cv, pr_s, qrs_s, qt_s, t_amp, t_width_s, u_amp, st_mv,
    voltage, qrs_axis_deg, t_axis_deg, af, bbb, territory.
    """
    n = ecgs.height
    g = {c: ecgs[c].to_numpy() for c in ecgs.columns}
    af, bbb, hf = g["af"], g["bbb"], g["hf"]
    k, ca = g["potassium"], g["calcium"]
    hr = np.clip(g["heart_rate"] + rng.normal(0, 3, n) + 4 * g["anaemia"], 40, 180)
    rr = 60.0 / hr
    qrs = (
        0.088
        + 0.012 * hf
        + 0.05 * (bbb > 0)
        + 0.008 * (k > 6.0) * (k - 6.0)
        + rng.normal(0, 0.006, n)
    )
    # Bazett-corrected QT lengthens with hypocalcaemia (about 40 ms per mg/dL).
    qtc = (
        0.405 + 0.04 * (9.3 - ca) + 0.025 * (bbb > 0) + 0.01 * g["female"] + rng.normal(0, 0.012, n)
    )
    qt = np.clip(qtc * np.sqrt(rr), 0.24, 0.62)
    # Hyperkalaemia: taller and narrower (peaked) T; hypokalaemia: flat T and a U wave.
    t_amp = np.clip(1.0 + 0.55 * (k - 4.2), 0.2, 3.5) * np.exp(rng.normal(0, 0.12, n))
    t_width = 0.05 / (1.0 + 0.3 * np.clip(k - 4.6, 0, None))
    u_amp = 0.08 * np.clip(3.7 - k, 0, None)
    ischaemic = g["ischaemia"]
    st = np.where(
        ischaemic,
        np.where(g["stemi"], rng.uniform(0.15, 0.35, n), -rng.uniform(0.05, 0.12, n)),
        0.0,
    )
    voltage = np.sqrt(27.0 / g["bmi"]) * np.exp(rng.normal(0, 0.12, n))
    voltage *= 1.0 - 0.08 * g["renal"] - 0.05 * g["sepsis"]  # weak effects only
    axis = rng.normal(45, 18, n) - 25 * (bbb == 1) + 30 * (bbb == 2)
    return pl.DataFrame(
        {
            "study_id": g["study_id"],
            "ecg_heart_rate": hr,
            "rr_cv": np.where(af, rng.uniform(0.15, 0.28, n), rng.uniform(0.01, 0.04, n)),
            "pr_s": np.clip(rng.normal(0.16, 0.018, n), 0.11, 0.24),
            "qrs_s": qrs,
            "qt_s": qt,
            "t_amp": t_amp,
            "t_width_s": t_width,
            "u_amp": u_amp,
            "st_mv": st,
            "voltage": voltage,
            "qrs_axis_deg": axis,
            "t_axis_deg": axis + rng.normal(0, 12, n),
            "af": af,
            "bbb": bbb,
            "territory": g["territory"],
        }
    )


def _unit(deg: float, z: float) -> np.ndarray:
    v = np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg)), z])
    return v / np.linalg.norm(v)


def _waves(p: dict[str, float]) -> list[tuple[float, float, np.ndarray]]:
    """(centre relative to R peak [s], width sigma [s], dipole vector [mV]) of each wave."""
    q, amp, bbb = p["qrs_s"], p["voltage"], int(p["bbb"])
    main = _unit(p["qrs_axis_deg"], -0.45) * 1.5 * amp
    waves: list[tuple[float, float, np.ndarray]] = []
    if not p["af"]:
        waves.append((-p["pr_s"] + 0.05, 0.022, _unit(55, 0.2) * 0.16 * amp))
    if bbb == 1:  # LBBB: no septal q, broad leftward-posterior depolarisation
        main = _unit(p["qrs_axis_deg"], -0.8) * 1.7 * amp
        waves += [(-0.1 * q, q / 5.0, main), (0.2 * q, q / 6.0, 0.6 * main)]
    else:
        waves += [
            (-0.33 * q, q / 14, np.array([-0.2, 0.05, 0.3]) * amp),  # septal
            (0.0, q / 9, main),
            (0.3 * q, q / 11, np.array([-0.35, -0.2, -0.9]) * 0.6 * amp),
        ]
        if bbb == 2:  # RBBB: late rightward-anterior forces (R' in V1, wide S in I, V6)
            waves.append((0.38 * q, q / 8, np.array([-0.6, 0.0, 0.8]) * 0.9 * amp))
    t_dir = _unit(p["t_axis_deg"], 0.35)
    if bbb == 1:
        t_dir = -0.8 * _unit(p["qrs_axis_deg"], -0.8)  # discordant repolarisation
    t_c = p["qt_s"] - 2.3 * p["t_width_s"]
    st_end = q / 2
    waves.append((t_c, p["t_width_s"], t_dir * 0.38 * p["t_amp"] * amp))
    if p["st_mv"] != 0:
        st_vec = _TERRITORY[int(p["territory"])] * p["st_mv"]
        mid = 0.5 * (st_end + t_c)
        waves.append((mid, max((t_c - st_end) / 2.2, 0.02), st_vec))
    if p.get("j_mv", 0.0) > 0:  # world "realistic": male J-point elevation in V1-V3
        mid = 0.5 * (st_end + t_c)
        waves.append((mid, max((t_c - st_end) / 2.2, 0.02), _TERRITORY[1] * p["j_mv"]))
    if p["u_amp"] > 0:
        waves.append((p["qt_s"] + 0.08, 0.035, t_dir * p["u_amp"] * amp))
    return waves


def _beat_times(p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    rr = 60.0 / p["ecg_heart_rate"]
    n = int(12.0 / rr) + 4
    if p["af"]:
        rrs = rr * np.exp(rng.normal(0, p["rr_cv"], n))  # irregularly irregular
    else:  # respiratory sinus arrhythmia
        rrs = rr * (1 + p["rr_cv"] * np.sin(2 * np.pi * np.arange(n) / rng.uniform(3, 5)))
    rrs = np.clip(rrs, 0.27, 2.0)
    return np.cumsum(rrs) - rng.uniform(0.5, 1.0) * rr - rrs[0]


def dipole(p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """The cardiac dipole over the 10 s record, shape (3, L) in mV."""
    beats = _beat_times(p, rng)  # (nb,)
    last = np.clip(np.searchsorted(beats, T, side="right") - 1, 0, beats.size - 2)  # (L,)
    d = np.zeros((3, N_SAMPLES))
    for centre, sigma, vec in _waves(p):
        # Each sample sees the waves of the last beat before it and of the next beat.
        g = sum(np.exp(-0.5 * ((T - beats[last + j] - centre) / sigma) ** 2) for j in (0, 1))
        d += vec[:, None] * g[None, :]
    if p["af"]:  # fibrillatory waves, strongest towards V1
        f = rng.uniform(5, 7)
        fw = 0.05 * np.sin(2 * np.pi * f * T + 2 * np.sin(2 * np.pi * 0.3 * T))
        d += np.array([-0.3, 0.2, 0.7])[:, None] * fw[None, :]
    return d


def leads_mv(p: dict[str, float], rng: np.random.Generator, mains_hz: float) -> np.ndarray:
    """The 12 leads in pipeline.mimic_schema.LEADS order, shape (12, L) in mV, float."""
    e = _ELECTRODES @ dipole(p, rng)  # (9, L) electrode potentials
    n_e = e.shape[0]
    wander = np.zeros_like(e)
    for _ in range(2):
        freq = rng.uniform(0.05, 0.45, (n_e, 1))
        wander += rng.normal(0, 0.06, (n_e, 1)) * np.sin(
            2 * np.pi * freq * T + rng.uniform(0, 6.3, (n_e, 1))
        )
    hum = rng.uniform(0, 0.02) * rng.normal(1, 0.3, (n_e, 1)) * np.sin(2 * np.pi * mains_hz * T)
    e = e + wander + hum + rng.normal(0, 0.012, e.shape)
    ra, la, ll, v = e[0], e[1], e[2], e[3:]
    wct = (ra + la + ll) / 3
    limb = np.stack(
        [la - ra, ll - ra, ll - la, ra - (la + ll) / 2, ll - (ra + la) / 2, la - (ra + ll) / 2]
    )
    out = np.concatenate([limb, v - wct[None, :]])
    assert len(LEADS) == out.shape[0]
    return out


def to_adc(x_mv: np.ndarray) -> np.ndarray:
    """mV -> int16 digital samples (gain ADC_GAIN, baseline 0), clipped to the int16 range."""
    return np.clip(np.round(x_mv * ADC_GAIN), -32767, 32767).astype(np.int16)
