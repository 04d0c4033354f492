"""Explanations: which lab abnormalities the lab head predicts for ECGs a diagnosis head flags."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.evaluation.predictions import Predictions

log = logging.getLogger(__name__)

TOP_FRACTION = 0.1  # "flagged" = top decile of the diagnosis score


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


def lab_lift(diagnoses: Predictions, labs: Predictions, top: list[str]) -> Explanations:
    """For each diagnosis in ``top``, lift of every predicted lab abnormality in its top decile.

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
        flagged = score >= np.quantile(score, 1.0 - TOP_FRACTION)
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


def top_labs_text(ex: Explanations, names: dict[str, str], n: int = 3) -> list[str]:
    """Markdown table rows: the ``n`` labs with the highest lift for each diagnosis."""
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
        rows.append(f"| {label} | {ex.n_flagged[d]} | {', '.join(parts) or '-'} |")
    return rows
