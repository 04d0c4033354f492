"""Linear probes on frozen embeddings: ridge for values (R2), logistic for flags (AUROC).

Each probe is fitted on the training records, its one hyper-parameter (ridge alpha,
inverse logistic strength C) is chosen on the validation records, and it is scored once on
the test records with an empirical bootstrap interval. The bootstrap draws rows of
:func:`pipeline.metrics.resample_indices` over a variable's measured test
records, so every encoder probed on that variable shares the resamples and paired
differences between encoders are well defined.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import skew
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge

from pipeline.metrics import (
    Estimate,
    auroc_per_label,
    bootstrap_auroc,
    percentile_interval,
    resample_indices,
)

Kind = Literal["value", "flag"]


@dataclass(frozen=True)
class Split:
    """Embeddings (standardised on train) and one variable's values, per part.

    Attributes:
        x: part -> (n, d) embeddings; y: part -> (n,) values with NaN where unmeasured.
    """

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]

    def measured(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        keep = ~np.isnan(self.y[part])
        return self.x[part][keep], self.y[part][keep]


@dataclass(frozen=True)
class Variable:
    """One probed quantity, aligned to the probe's record order (NaN where unmeasured).

    Attributes:
        source: "lab value", "lab flag" or "ground truth".
        name: Lab name, lab target or latent variable.
        kind: "value" (ridge, R2) or "flag" (logistic, AUROC).
        values: (N,) float64.
    """

    source: str
    name: str
    kind: Kind
    values: np.ndarray


@dataclass(frozen=True)
class ProbeScore:
    """One probe's test score with its bootstrap resamples (kept for paired differences).

    Attributes:
        estimate: Test R2 or AUROC with its 95% interval (NaN when skipped).
        boot: (n_bootstrap,) per-resample scores, empty when skipped.
        hyper: The chosen alpha or C.
        transform: "log" when the value was probed on the log scale, else "none".
        n_train, n_test: Measured records used to fit and to score.
        status: "ok" or the reason it was skipped.
    """

    estimate: Estimate
    boot: np.ndarray
    hyper: float
    transform: str
    n_train: int
    n_test: int
    status: str


def choose_transform(y_train: np.ndarray) -> str:
    """ "log" for a positive, right-skewed value (troponin, creatinine), else "none".

    Decided on the training values only, so every encoder probes the same scale.
    """
    y = y_train[~np.isnan(y_train)]
    if y.size < 3 or y.min() <= 0 or np.ptp(y) == 0:
        return "none"
    return "log" if abs(skew(np.log(y))) < abs(skew(y)) and skew(y) > 1.0 else "none"


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return float("nan") if ss_tot == 0 else 1.0 - float(((y - pred) ** 2).sum()) / ss_tot


def bootstrap_r2(y: np.ndarray, pred: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """R2 on each resample of the records (rows of ``resample_indices``)."""
    out = []
    for idx in resample_indices(len(y), n_bootstrap, seed):
        yb, pb = y[idx], pred[idx]  # (b, n)
        ss_tot = ((yb - yb.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        ss_res = ((yb - pb) ** 2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan))
    return np.concatenate(out)


def _skipped(reason: str, n_train: int, n_test: int, transform: str = "none") -> ProbeScore:
    nan = float("nan")
    return ProbeScore(
        Estimate(nan, nan, nan, 0), np.zeros(0), nan, transform, n_train, n_test, reason
    )


def probe_value(
    split: Split, alphas: Sequence[float], n_bootstrap: int, seed: int, min_records: int
) -> ProbeScore:
    """Ridge regression of a continuous value; R2 on the test records."""
    (xt, yt), (xv, yv), (xs, ys) = (split.measured(p) for p in ("train", "val", "test"))
    if len(yt) < min_records or len(ys) < min_records:
        return _skipped(
            f"skipped: fewer than {min_records} measured train/test records", len(yt), len(ys)
        )
    transform = choose_transform(yt)
    f = np.log if transform == "log" else (lambda a: a)
    yt, yv, ys = f(yt), f(yv), f(ys)
    if np.ptp(yt) == 0:
        return _skipped("skipped: constant in training", len(yt), len(ys), transform)
    if len(yv) >= 2:
        fits = [Ridge(alpha=a).fit(xt, yt) for a in alphas]
        i = int(np.nanargmax(np.nan_to_num([r2(yv, m.predict(xv)) for m in fits], nan=-np.inf)))
        model = fits[i]  # the chosen fit itself: a refit would repeat it
    else:  # no validation to choose on: the first alpha
        i, model = 0, Ridge(alpha=alphas[0]).fit(xt, yt)
    best, pred = float(alphas[i]), model.predict(xs)
    boot = bootstrap_r2(ys, pred, n_bootstrap, seed)
    return ProbeScore(
        percentile_interval(r2(ys, pred), boot), boot, best, transform, len(yt), len(ys), "ok"
    )


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    return float(auroc_per_label(y[:, None], p[:, None])[0])


def _logistic(x: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the best C is what matters
        return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def probe_flag(
    split: Split, cs: Sequence[float], n_bootstrap: int, seed: int, min_records: int
) -> ProbeScore:
    """Logistic regression of a 0/1 flag; AUROC on the test records."""
    (xt, yt), (xv, yv), (xs, ys) = (split.measured(p) for p in ("train", "val", "test"))
    n_pos = int(yt.sum())
    if min(n_pos, len(yt) - n_pos) < max(2, min_records // 4) or len(ys) < min_records:
        return _skipped(
            "skipped: too few measured train/test records or positives", len(yt), len(ys)
        )
    if len(np.unique(ys)) < 2:
        return _skipped("skipped: test records lack a class", len(yt), len(ys))
    if len(np.unique(yv)) == 2:
        fits = [_logistic(xt, yt, c) for c in cs]
        val = [_auroc(yv, m.predict_proba(xv)[:, 1]) for m in fits]
        i = int(np.nanargmax(np.nan_to_num(val, nan=-np.inf)))
        model = fits[i]  # the chosen fit itself: a refit would repeat it
    else:  # validation lacks a class: the middle C
        i = len(cs) // 2
        model = _logistic(xt, yt, cs[i])
    best, prob = float(cs[i]), model.predict_proba(xs)[:, 1]
    boot = bootstrap_auroc(ys[:, None], prob[:, None], n_bootstrap, seed, np.array([0]))[:, 0]
    return ProbeScore(
        percentile_interval(_auroc(ys, prob), boot), boot, best, "none", len(yt), len(ys), "ok"
    )


def paired(a: ProbeScore, b: ProbeScore) -> Estimate | None:
    """``a - b`` on the shared resamples; None when either probe was skipped."""
    if a.status != "ok" or b.status != "ok" or a.boot.shape != b.boot.shape:
        return None
    point = a.estimate.point - b.estimate.point
    if math.isnan(point):
        return None
    return percentile_interval(point, a.boot - b.boot)
