"""Explanations: which lab abnormalities the lab head predicts for ECGs a diagnosis head flags."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.evaluation.predictions import Predictions

log = logging.getLogger(__name__)

TOP_FRACTION = 0.1  # "flagged" = top decile of the diagnosis score


# Lab targets a diagnosis (code prefix) is known to move, clinically and in the synthetic
# cohort's physiology; the report shows where they rank among the flagged ECGs' labs.
EXPECTED_LABS: dict[str, tuple[str, ...]] = {
    "E875": ("Potassium_high",),
    "N18": ("Creatinine_high", "Urea_Nitrogen_high"),
    "N17": ("Creatinine_high", "Urea_Nitrogen_high"),
    "D64": ("Hemoglobin_low", "Hematocrit_low"),
    "D63": ("Hemoglobin_low", "Hematocrit_low"),
    "I50": ("Troponin_T_high",),
    "A41": ("Lactate_high", "White_Blood_Cells_high"),
    "E871": ("Sodium_low",),
    "E876": ("Potassium_low",),
}


@dataclass(frozen=True)
class ExplainConfig:
    """The ``explain`` config section: which diagnoses the lift report covers.

    Attributes:
        diagnoses: Codes always covered (those with known lab causes in the cohort:
            hyperkalaemia E875, kidney disease N18, anaemia D64, heart failure I50, sepsis
            A41); codes that are not diagnosis labels of the run are skipped with a note.
        n_frequent: Plus this many of the most frequent (evaluable) diagnoses.
        top_fraction: Flagged ECGs are those in this top fraction of a diagnosis score.
    """

    diagnoses: tuple[str, ...] = ("E875", "N18", "D64", "I50", "A41")
    n_frequent: int = 10
    top_fraction: float = TOP_FRACTION

    def __post_init__(self) -> None:
        if not 0 < self.top_fraction < 1:
            raise ValueError(f"explain.top_fraction must be in (0, 1), got {self.top_fraction}")


def explained_diagnoses(
    labels: np.ndarray, frequent: list[str], cfg: ExplainConfig
) -> tuple[list[str], list[str]]:
    """The configured codes that are labels, then the frequent ones; notes on the others."""
    known = set(labels.tolist())
    chosen = [c for c in dict.fromkeys(cfg.diagnoses) if c in known]
    notes = [
        f"{c}: not a diagnosis label of this run (fewer positives than labels.min_count?), skipped"
        for c in dict.fromkeys(cfg.diagnoses)
        if c not in known
    ]
    chosen += [c for c in frequent if c not in chosen][: cfg.n_frequent]
    return chosen, notes


@dataclass(frozen=True)
class Explanations:
    """Lift of each lab target among the ECGs flagged for each diagnosis.

    Attributes:
        diagnoses: (D,) diagnosis labels (rows).
        labs: (L,) lab targets (columns).
        lift: (D, L) mean predicted lab probability among flagged ECGs / among the others.
        observed_flagged: (D, L) observed abnormality rate among flagged ECGs (measured only).
        observed_rest: (D, L) observed rate among the other ECGs.
        n_flagged: (D,) flagged ECGs per diagnosis.
    """

    diagnoses: np.ndarray
    labs: np.ndarray
    lift: np.ndarray
    observed_flagged: np.ndarray
    observed_rest: np.ndarray
    n_flagged: np.ndarray

    def to_frame(self, names: dict[str, str]) -> pl.DataFrame:
        """Long table: one row per (diagnosis, lab target)."""
        n_d, n_l = self.lift.shape
        d = np.repeat(np.arange(n_d), n_l)  # (D * L,) row-major like lift.ravel()
        lab = np.tile(np.arange(n_l), n_d)  # (D * L,)
        return pl.DataFrame(
            {
                "diagnosis": self.diagnoses[d],
                "diagnosis_name": [names.get(x, x) for x in self.diagnoses[d]],
                "lab_target": self.labs[lab],
                "n_flagged": self.n_flagged[d],
                "predicted_lift": self.lift.ravel(),
                "observed_rate_flagged": self.observed_flagged.ravel(),
                "observed_rate_rest": self.observed_rest.ravel(),
            },
            nan_to_null=True,
        )


def _nanmean_rows(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the rows selected by ``mask`` of (N, L) ``values``, ignoring NaN."""
    sel = values[mask]  # (n, L)
    count = (~np.isnan(sel)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.nansum(sel, axis=0) / np.maximum(count, 1), np.nan)


def lab_lift(
    diagnoses: Predictions,
    labs: Predictions,
    top: list[str],
    top_fraction: float = TOP_FRACTION,
) -> Explanations:
    """For each diagnosis in ``top``, lift of every predicted lab abnormality among flagged ECGs.

    Flagged: the ``top_fraction`` of records with the highest diagnosis score.

    Both models are matched on study_id; records present in only one are left out (and
    counted in the log).
    """
    common, i_d, i_l = np.intersect1d(diagnoses.study_id, labs.study_id, return_indices=True)
    dropped = len(diagnoses.study_id) + len(labs.study_id) - 2 * len(common)
    if dropped:
        log.warning("explanations: %d records not in both prediction files are left out", dropped)
    if len(common) < 2:
        raise ValueError(
            f"{diagnoses.path} and {labs.path} share {len(common)} records; "
            "explanations need the same test records"
        )
    lab_prob = labs.prob[i_l]  # (N, L)
    lab_obs = labs.target[i_l]  # (N, L) with NaN
    cols = [int(np.flatnonzero(diagnoses.labels == c)[0]) for c in top]
    lift, obs_f, obs_r, n_flag = [], [], [], []
    for k in cols:
        score = diagnoses.prob[i_d, k]  # (N,)
        flagged = score >= np.quantile(score, 1.0 - top_fraction)
        if flagged.all():  # constant score: nothing stands out
            flagged[:] = False
        n_flag.append(int(flagged.sum()))
        with np.errstate(invalid="ignore", divide="ignore"):
            lift.append(_nanmean_rows(lab_prob, flagged) / _nanmean_rows(lab_prob, ~flagged))
        obs_f.append(_nanmean_rows(lab_obs, flagged))
        obs_r.append(_nanmean_rows(lab_obs, ~flagged))
    return Explanations(
        diagnoses=np.array(top),
        labs=labs.labels,
        lift=np.array(lift).reshape(len(cols), len(labs.labels)),
        observed_flagged=np.array(obs_f).reshape(len(cols), len(labs.labels)),
        observed_rest=np.array(obs_r).reshape(len(cols), len(labs.labels)),
        n_flagged=np.array(n_flag, dtype=np.int64),
    )


def lab_rank(ex: Explanations, d: int, lab: str) -> int | None:
    """1-based rank of ``lab`` by lift in row ``d`` (None when absent or undefined)."""
    hits = np.flatnonzero(ex.labs == lab)
    if hits.size == 0 or np.isnan(ex.lift[d, hits[0]]):
        return None
    lift = np.nan_to_num(ex.lift[d], nan=-np.inf)
    return int((lift > lift[hits[0]]).sum()) + 1


def _expected_text(ex: Explanations, d: int, diag: str) -> str:
    wanted = next((v for k, v in EXPECTED_LABS.items() if diag.startswith(k)), ())
    ranks = [(lab, lab_rank(ex, d, lab)) for lab in wanted]
    shown = [f"{lab} #{r}" for lab, r in ranks if r is not None]
    absent = [lab for lab, r in ranks if r is None]
    if absent:
        shown.append(f"{'/'.join(absent)} not a lab target")
    return ", ".join(shown) if wanted else "-"


def top_labs_text(ex: Explanations, names: dict[str, str], n: int = 3) -> list[str]:
    """Markdown table rows: the ``n`` labs with the highest lift for each diagnosis.

    The last column ranks (by lift, of ``len(ex.labs)``) the lab targets a diagnosis is
    known to move (:data:`EXPECTED_LABS`), where it has any.
    """
    rows = []
    for d, diag in enumerate(ex.diagnoses.tolist()):
        order = np.argsort(-np.nan_to_num(ex.lift[d], nan=-np.inf), kind="stable")[:n]
        parts = []
        for j in order:
            if np.isnan(ex.lift[d, j]):
                continue
            obs = ex.observed_flagged[d, j], ex.observed_rest[d, j]
            seen = "" if np.isnan(obs).any() else f"; observed {obs[0]:.0%} vs {obs[1]:.0%}"
            parts.append(f"{ex.labs[j]} x{ex.lift[d, j]:.2f}{seen}")
        label = f"{diag} {names.get(diag, '')}".strip()
        rows.append(
            f"| {label} | {ex.n_flagged[d]} | {', '.join(parts) or '-'} "
            f"| {_expected_text(ex, d, diag)} |"
        )
    return rows
