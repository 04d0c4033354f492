"""ICD coding of lab-defined conditions as validation studies measured it (world "realistic").

Real coding is sparse and imperfect: E87.5 is coded in about 14 % of hyperkalaemic
presentations, with a positive predictive value (PPV) of 62-83 % (Fleet et al. 2012). The
world "null" codes these conditions from the state at the ECG with probability 0.6-0.8
and never without the condition; the world "realistic" recodes them here, per setting
(ED diagnoses, hospital discharge codes) with the sensitivity and PPV of
``pipeline/resources/synth_coding.tsv`` (each with its source, docs/synthetic_cohort.md):

- true positives: ``round(sensitivity * n_present)`` of the stays with the condition,
  drawn with weights ``exp(SEVERITY_LOG_OR * excess)`` (severe cases are coded more often;
  code-positive patients have more extreme values in every study cited);
- false positives: as many as the PPV implies, drawn among stays without the condition at
  presentation with weights ``exp(excess) * (1 + HISTORY_WEIGHT * history)``: values near
  the threshold (the condition may arise later in the admission, the code describes the
  whole stay) and patients with the condition at another stay (history codes).

Counts are rounded stochastically, so the measured sensitivity and PPV are the cited ones up
to sampling noise at any cohort size. All draws come from the world's own random stream.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import numpy as np
import polars as pl

SEVERITY_LOG_OR = 0.7  # log odds of coding per unit of excess (our choice; direction cited)
HISTORY_WEIGHT = 2.0  # extra false-positive weight of a patient with the condition elsewhere
SETTINGS = ("ed", "admission")

State = dict[str, np.ndarray]


def _anaemia(s: State) -> np.ndarray:
    return (np.where(s["female"], 11.5, 12.5) - s["hemoglobin"]) / 1.5


# Condition -> excess over its threshold in clinical units (> 0: present at presentation).
# Thresholds are the validation studies' (K > 5.5, Na <= 132, >= 2-fold creatinine) where
# one is cited, otherwise the generator's lab flags.
EXCESS: dict[str, Callable[[State], np.ndarray]] = {
    "hyperkalaemia": lambda s: (s["potassium"] - 5.5) / 0.5,
    "hypokalaemia": lambda s: (3.3 - s["potassium"]) / 0.3,
    "hyponatraemia": lambda s: (132.0 - s["sodium"]) / 4.0,
    "hypocalcaemia": lambda s: (8.0 - s["calcium"]) / 0.5,
    "anaemia": _anaemia,
    # AKI is a latent event; without it, chronic renal dysfunction is the near miss.
    "aki": lambda s: np.where(s["aki"], s["renal"], s["renal"] - 1.0) / 0.3,
}
STATE_COLUMNS = (
    *("subject_id", "potassium", "sodium", "calcium", "hemoglobin", "female"),
    *("aki", "renal", "admitted", "ckd_stage"),
)


@dataclass(frozen=True)
class CodingRate:
    """One row of synth_coding.tsv."""

    code: str
    condition: str
    setting: str
    sensitivity: float
    ppv: float
    source: str


def load_coding_rates() -> list[CodingRate]:
    """The coding table ``pipeline/resources/synth_coding.tsv`` (file order), validated."""
    text = resources.files("pipeline").joinpath("resources/synth_coding.tsv").read_text()
    lines = (ln for ln in text.splitlines() if not ln.startswith("#"))
    rows = csv.DictReader(lines, delimiter="\t")
    out = []
    for r in rows:
        rate = CodingRate(
            r["code"], r["condition"], r["setting"], float(r["sensitivity"]), float(r["ppv"]),
            r["source"],
        )  # fmt: skip
        if rate.condition not in EXCESS or rate.setting not in SETTINGS:
            raise ValueError(f"synth_coding.tsv: {rate.code}: unknown condition or setting")
        if not (0 <= rate.sensitivity <= 1 and 0 < rate.ppv <= 1):
            raise ValueError(f"synth_coding.tsv: {rate.code} {rate.setting}: rate outside [0, 1]")
        out.append(rate)
    return out


def _stochastic_round(rng: np.random.Generator, x: float) -> int:
    return int(np.floor(x + rng.random()))


def _pick(rng: np.random.Generator, idx: np.ndarray, log_w: np.ndarray, k: int) -> np.ndarray:
    """``k`` of ``idx`` without replacement, with probability proportional to exp(log_w)."""
    if k <= 0:
        return idx[:0]
    w = np.exp(log_w - log_w.max())
    return rng.choice(idx, size=min(k, idx.size), replace=False, p=w / w.sum())


def draw_coded(
    rng: np.random.Generator, excess: np.ndarray, history: np.ndarray, rate: CodingRate
) -> np.ndarray:
    """Which of the eligible stays carry the code, shape like ``excess`` (bool)."""
    present = excess > 0
    pos, neg = np.flatnonzero(present), np.flatnonzero(~present)
    k_tp = min(_stochastic_round(rng, rate.sensitivity * pos.size), pos.size)
    k_fp = min(_stochastic_round(rng, k_tp * (1 - rate.ppv) / rate.ppv), neg.size)
    coded = np.zeros(excess.size, dtype=bool)
    coded[_pick(rng, pos, SEVERITY_LOG_OR * excess[pos], k_tp)] = True
    near = excess[neg] + np.log1p(HISTORY_WEIGHT * history[neg])
    coded[_pick(rng, neg, near, k_fp)] = True
    return coded


def recode(
    rng: np.random.Generator,
    stays: pl.DataFrame,
    hosp: list[list[str]],
    ed: list[list[str]],
    rates: list[CodingRate],
) -> tuple[list[list[str]], list[list[str]]]:
    """The null world's hospital and ED codes with the table's conditions recoded."""
    s = {c: stays[c].to_numpy() for c in STATE_COLUMNS}
    table_codes = {r.code for r in rates} | {"D631"}  # D63.1: anaemia in CKD, as D64.9
    out = {
        "admission": [[c for c in codes if c not in table_codes] for codes in hosp],
        "ed": [[c for c in codes if c not in table_codes] for codes in ed],
    }
    subject = pl.Series(s["subject_id"])
    for rate in rates:
        excess = EXCESS[rate.condition](s)
        present = pl.Series(excess > 0)
        # history: the same patient has the condition at one of its other stays
        n_present = pl.DataFrame({"s": subject, "p": present}).select(pl.col("p").sum().over("s"))
        history = (n_present.to_series().to_numpy() - present.to_numpy()) > 0
        admission = rate.setting == "admission"
        rows = np.flatnonzero(s["admitted"]) if admission else np.arange(len(excess))
        coded = rows[draw_coded(rng, excess[rows], history[rows], rate)]
        ckd_split = rng.random(coded.size) < 0.5
        for i, in_ckd in zip(coded, ckd_split, strict=True):
            code = "D631" if rate.code == "D649" and s["ckd_stage"][i] and in_ckd else rate.code
            out[rate.setting][i].append(code)
    return out["admission"], out["ed"]
