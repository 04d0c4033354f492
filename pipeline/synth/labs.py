"""Lab draws and labevents rows of the synthetic cohort.

A stay gets an ED draw (within 75 min of intime, so many fall within +-60 min of the
ED ECG), sometimes a repeat draw hours later, daily draws while admitted and an
outpatient draw weeks before. Each draw orders panels (BMP, CBC, blood gas, ...) with
probabilities that grow with the stay's severity, so sicker patients have more labs.
Values come from the stay's latent state (acute deviations partly regressed for later
draws) plus analytic noise.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.synth.catalogue import LabItem
from pipeline.synth.physiology import DAY

PANELS = (
    "bmp",
    "cbc",
    "diff",
    "bands",
    "coag",
    "fib",
    "lft",
    "dbili",
    "cardiac",
    "bgas",
    "cohb",
    "lactate",
    "crp",
    "ua",
)


def _panel_probs(s: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    """Probability that a draw orders each panel, from severity and the complaint."""
    sev = np.clip(s["severity"], 0, 3) / 3
    chest, fever, dysp = s["complaint"] == 0, s["complaint"] == 3, s["complaint"] == 1
    sep, isch = s["sepsis"], s["ischaemia"]
    if kind == "ed":
        p = {
            "bmp": 0.86 + 0.12 * sev,
            "cbc": 0.84 + 0.14 * sev,
            "diff": 0.5 + 0.3 * sev,
            "coag": 0.3 + 0.3 * s["af"] + 0.3 * sev,
            "fib": 0.05 + 0.3 * sep,
            "lft": 0.3 + 0.3 * sep + 0.2 * sev,
            "dbili": 0.06 + 0.1 * sep,
            "cardiac": 0.3 + 0.5 * chest + 0.3 * isch + 0.2 * dysp,
            "bgas": 0.12 + 0.4 * sep + 0.2 * dysp,
            "lactate": 0.12 + 0.6 * sep,
            "crp": 0.1 + 0.3 * fever,
            "ua": 0.4 + 0.3 * fever,
        }
    elif kind == "repeat":
        p = {"bmp": 0.8, "cbc": 0.5, "cardiac": 0.3 + 0.6 * chest, "lactate": 0.7 * sep}
    elif kind == "inpatient":
        p = {"bmp": 0.95, "cbc": 0.9, "diff": 0.3, "coag": 0.3, "lft": 0.15}
    else:  # outpatient / extra
        p = {"bmp": 0.8, "cbc": 0.8, "diff": 0.3, "lft": 0.25, "ua": 0.2}
    n = sev.size
    out = {k: np.broadcast_to(np.clip(v, 0, 1), (n,)) for k, v in p.items()}
    if "diff" in out:
        out["bands"] = out["diff"] * (0.2 + 0.5 * sep)
    if "bgas" in out:
        out["cohb"] = out["bgas"] * 0.2
    return out


def lab_values(s: dict[str, np.ndarray], rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Values of every emitted item (keyed by itemid) for draws with latent state ``s``."""
    n = s["potassium"].size

    def z(sd: float) -> np.ndarray:
        return rng.normal(0.0, sd, n)

    def logn(med: float, sd: float) -> np.ndarray:
        return med * np.exp(z(sd))

    sep, renal, isch = s["sepsis"].astype(float), s["renal"], s["ischaemia"].astype(float)
    k, na, ca, hb = s["potassium"], s["sodium"], s["calcium"], s["hemoglobin"]
    glucose = (98 + 70 * s["diabetes"] * np.exp(z(0.4)) + 30 * sep) * np.exp(z(0.12))
    cl = na - 37 + z(2.5)
    hco3 = 25.5 - 5 * sep - 4 * renal + z(2.0)
    wbc = logn(7.5, 0.28) + sep * rng.uniform(3, 14, n)
    neut = np.clip(60 + 16 * sep + z(8), 30, 96)
    eos, baso = logn(1.6, 0.6), logn(0.4, 0.4)
    lymph = np.clip(100 - neut - eos - baso - 7 + z(2), 1, 60)
    ph_blood = 7.39 - 0.07 * sep - 0.05 * renal + z(0.035)
    pco2 = 41 + 8 * s["copd"] + z(5)
    pt = (
        11.6
        + np.where(s["af"], rng.uniform(0, 14, n), 0.0) * (rng.random(n) < 0.6)
        + z(0.6)
        + 2 * sep
    )
    urine_glu = np.where(
        (glucose > 180) & (rng.random(n) < 0.8), rng.choice([100.0, 300.0, 1000.0], n), np.nan
    )
    return {
        50971: k + z(0.1),
        50822: k - 0.2 + z(0.12),
        50983: na + z(0.8),
        50824: na - 1 + z(1.2),
        50902: cl,
        50882: hco3,
        50868: na - cl - hco3 + z(0.5),
        51006: 14 * s["creatinine"] ** 0.9 * np.exp(z(0.25)),
        50912: s["creatinine"] * np.exp(z(0.05)),
        50931: glucose,
        50809: glucose * np.exp(z(0.03)),
        51478: urine_glu,
        50893: ca + z(0.1),
        50808: 1.18 + 0.1 * (ca - 9.3) + z(0.025),
        50960: 2.0 + 0.3 * renal + z(0.2),
        50970: 3.4 + 2.5 * renal + z(0.5),
        51301: wbc,
        51279: hb / 3.0 + z(0.12),
        51222: hb + z(0.15),
        50811: hb + z(0.3),
        51221: hb * 3.0 + z(1.0),
        51265: np.clip(logn(240, 0.3) - 70 * sep, 8, 900),
        51277: 13.4 + 1.6 * s["anaemia"] + 1.5 * renal + logn(0.6, 0.6),
        51256: neut,
        51244: lymph,
        51200: eos,
        51146: baso,
        51133: wbc * lymph / 100,
        52073: wbc * eos / 100,
        52069: wbc * baso / 100,
        51144: np.where(sep, rng.uniform(2, 18, n), rng.uniform(0, 4, n)),
        51274: pt,
        51237: pt / 11.6 + z(0.03),
        51275: 30 + 5 * sep + z(4),
        51214: 320 + 180 * sep + z(70),
        50861: logn(22, 0.5) * (1 + sep),
        50878: logn(26, 0.45) * (1 + sep) + 30 * isch,
        50863: logn(80, 0.35),
        50885: logn(0.6, 0.5) * (1 + sep),
        50883: logn(0.2, 0.5) * (1 + sep),
        50862: s["albumin"] + z(0.1),
        50889: logn(3.0, 1.0) + sep * rng.uniform(40, 250, n),
        51003: s["troponin"] * np.exp(z(0.1)),
        50910: logn(110, 0.5) + isch * rng.uniform(100, 1200, n),
        50911: logn(2.5, 0.4) + isch * rng.uniform(3, 60, n),
        50813: logn(1.3, 0.3) + sep * rng.uniform(0.5, 4.5, n),
        50820: ph_blood,
        50818: pco2,
        50802: hco3 - 24 + z(1),
        50817: np.clip(74 + z(12), 30, 100),
        50805: 1.0 + 2.2 * s["smoker"] + np.abs(z(0.5)),
        51491: 6.0 + z(0.7),
        51498: 1.016 + z(0.006),
    }


def schedule_draws(
    rng: np.random.Generator, stays: pl.DataFrame, extra_draws: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draws as (stay row, charttime, kind code, acute factor) arrays.

    Kind codes: 0 ED, 1 repeat, 2 inpatient, 3 outpatient; the acute factor scales the
    stay's acute deviation (1 at the ED draw, decaying with time after treatment).
    """
    n = stays.height
    intime = stays["intime"].to_numpy()
    sev = np.clip(stays["severity"].to_numpy(), 0, 3)
    rows, times, kinds, factors = [], [], [], []

    def add(mask: np.ndarray, t: np.ndarray, kind: int, f: np.ndarray | float) -> None:
        idx = np.flatnonzero(mask)
        rows.append(idx)
        times.append(t[idx])
        kinds.append(np.full(idx.size, kind))
        factors.append(np.broadcast_to(np.asarray(f, dtype=float), (n,))[idx])

    add(rng.random(n) < 0.92, intime + (rng.uniform(5, 75, n) * 60).astype(np.int64), 0, 1.0)
    add(
        rng.random(n) < 0.3 + 0.15 * sev,
        intime + (rng.uniform(2, 6, n) * 3600).astype(np.int64),
        1,
        0.8,
    )
    adm = stays["admitted"].to_numpy()
    days = np.ceil(stays["los_days"].to_numpy())
    day0 = (stays["admittime"].to_numpy() // DAY + 1) * DAY + 6 * 3600
    for d in range(3):
        jitter = (rng.uniform(-60, 90, n) * 60).astype(np.int64)
        add(adm & (days > d), day0 + d * DAY + jitter, 2, 0.6 * 0.6**d)
    add(rng.random(n) < 0.3, intime - (rng.uniform(10, 200, n) * DAY).astype(np.int64), 3, 0.0)
    for _ in range(extra_draws):
        add(np.ones(n, bool), intime - (rng.uniform(5, 700, n) * DAY).astype(np.int64), 3, 0.0)
    return (
        np.concatenate(rows),
        np.concatenate(times),
        np.concatenate(kinds),
        np.concatenate(factors),
    )


_NORMAL = {"potassium": 4.2, "calcium": 9.3, "sodium": 139.5, "troponin": 0.006}


def draw_state(stays: pl.DataFrame, rows: np.ndarray, factor: np.ndarray) -> dict[str, np.ndarray]:
    """Latent state at each draw: the stay's, with acute deviations scaled by ``factor``."""
    cols = [
        "potassium",
        "calcium",
        "sodium",
        "troponin",
        "hemoglobin",
        "creatinine",
        "renal",
        "albumin",
        "anaemia",
        "severity",
        "complaint",
        "sepsis",
        "ischaemia",
        "af",
        "diabetes",
        "copd",
        "smoker",
        "female",
    ]
    s = {c: stays[c].to_numpy()[rows] for c in cols}
    for c, v in _NORMAL.items():
        s[c] = v + (s[c] - v) * factor
    acute = factor > 0.5
    for c in ("sepsis", "ischaemia"):
        s[c] = s[c] & acute
    return s


_PROVIDERS = np.array([f"P{(i * 7919) % 0xFFFFF:05X}" for i in range(1, 301)])


def labevents_frame(
    rng: np.random.Generator,
    stays: pl.DataFrame,
    items: list[LabItem],
    extra_draws: int,
    first_specimen: int,
    first_labevent: int,
) -> pl.DataFrame:
    """All labevents rows of a chunk of stays (times as epoch seconds, ids from the counters).

    Rows are sorted by subject, charttime and itemid so the output is stable.
    """
    rows, times, kinds, factor = schedule_draws(rng, stays, extra_draws)
    s = draw_state(stays, rows, factor)
    values = lab_values(s, rng)
    probs = _panel_probs(s, "ed")
    by_kind = {
        k: _panel_probs(s, name) for k, name in ((1, "repeat"), (2, "inpatient"), (3, "outpatient"))
    }
    n = rows.size
    parts: list[pl.DataFrame] = []
    spec_next = first_specimen
    for panel in PANELS:
        p = np.zeros(n)
        p[kinds == 0] = probs.get(panel, np.zeros(n))[kinds == 0]
        for k, pk in by_kind.items():
            if panel in pk:
                p[kinds == k] = pk[panel][kinds == k]
        ordered = np.flatnonzero(rng.random(n) < p)
        specimen = (
            1_000_000 + spec_next + np.arange(ordered.size) * 3 + rng.integers(0, 3, ordered.size)
        )
        spec_next += 3 * ordered.size
        for item in (it for it in items if it.panel == panel):
            parts.append(
                _item_rows(
                    rng, item, ordered, values[item.itemid][ordered], s["female"][ordered], specimen
                )
            )
    df = pl.concat(parts)
    adm = stays["admitted"].to_numpy()
    hadm = stays["hadm_id"].fill_null(-1).to_numpy()
    draw = df["draw"].to_numpy()
    kind = kinds[draw]
    keep_hadm = adm[rows[draw]] & ((kind == 2) | ((kind <= 1) & (rng.random(draw.size) < 0.5)))
    ed = kind <= 1
    prio = np.where(ed, np.where(rng.random(draw.size) < 0.75, "STAT", ""), "ROUTINE")
    t = times[draw]
    store_delay = (rng.uniform(15, 150, rows.size) * 60).astype(np.int64)[draw]
    provider = np.where(
        rng.random(rows.size) < 0.6, _PROVIDERS[rng.integers(0, 300, rows.size)], ""
    )[draw]
    df = df.with_columns(
        pl.Series("subject_id", stays["subject_id"].to_numpy()[rows[draw]]),
        pl.Series("hadm_id", np.where(keep_hadm, hadm[rows[draw]], -1)).replace(-1, None),
        pl.Series("order_provider_id", provider),
        pl.Series("charttime", t),
        pl.Series("storetime", t + store_delay),
        pl.Series("priority", prio),
    ).sort(["subject_id", "charttime", "itemid", "specimen_id"], maintain_order=True)
    df = df.with_columns(
        pl.Series("labevent_id", first_labevent + 1 + np.arange(df.height, dtype=np.int64)),
        pl.lit(None, pl.Utf8).alias("comments"),
    )
    return df


def _item_rows(
    rng: np.random.Generator,
    item: LabItem,
    draws: np.ndarray,
    raw: np.ndarray,
    female: np.ndarray,
    specimen: np.ndarray,
) -> pl.DataFrame:
    """labevents rows of one item: value text, rounded valuenum, per-row reference range."""
    m = draws.size
    val = np.round(raw, item.decimals)
    if item.decimals == 0:
        text = pl.Series(val).cast(pl.Int64, strict=False).cast(pl.Utf8)
    else:
        text = pl.Series(np.char.mod(f"%.{item.decimals}f", val))
    if item.itemid == 51003:  # Troponin T below the assay's detection limit
        low = val < 0.01
        val = np.where(low, 0.01, val)
        text = pl.Series(np.where(low, "<0.01", text.to_numpy()))
    if item.itemid == 51478:  # urine glucose: "NEG" without a number, or a dipstick step
        text = pl.Series(np.where(np.isnan(val), "NEG", np.char.mod("%.0f", np.nan_to_num(val))))
    if item.ref_lower is None or item.ref_upper is None:
        lo = np.full(m, np.nan)
        hi = np.full(m, np.nan)
    else:
        lo = np.full(m, item.ref_lower)
        hi = np.full(m, item.ref_upper)
        if item.ref_lower_f is not None and item.ref_upper_f is not None:
            lo = np.where(female, item.ref_lower_f, lo)
            hi = np.where(female, item.ref_upper_f, hi)
        # A minority of rows come from another analyser with a slightly different range.
        variant = rng.choice(3, m, p=[0.85, 0.1, 0.05])
        lo = np.round(lo * np.array([1.0, 0.97, 1.03])[variant], max(item.decimals, 1))
        hi = np.round(hi * np.array([1.0, 1.02, 0.98])[variant], max(item.decimals, 1))
    flag = np.where((val < lo) | (val > hi), "abnormal", "")
    return pl.DataFrame(
        {
            "draw": draws,
            "specimen_id": specimen,
            "itemid": np.full(m, item.itemid, dtype=np.int64),
            "value": text,
            "valuenum": val,
            "valueuom": np.full(m, item.valueuom),
            "ref_lower": lo,
            "ref_upper": hi,
            "flag": flag,
        },
        nan_to_null=True,
    )
