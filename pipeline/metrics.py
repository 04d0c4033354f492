"""Vectorised AUROC, macro AUROC and empirical bootstrap confidence intervals.

AUROC is the Mann-Whitney statistic: the probability that a random positive scores above a
random negative, ties counting one half (Hanley & McNeil 1982). A bootstrap resample is
represented by how often it draws each record (a weight vector), so one sort per label
serves all resamples: per label and resample block the cost is two gathers and one cumulative
sum over (resamples x records), with no per-resample sorting and no sklearn call.

Shared by training (model selection, :mod:`pipeline.train.predict`) and evaluation (Table 1),
so both score the same way; it lives outside both packages so that ``train`` never imports
``evaluation`` (evaluation depends on train, never the reverse).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

CI_LEVEL = 0.95
# Resample rows per block are chosen so one block of weights holds about this many entries.
_BLOCK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval.

    Attributes:
        point: Estimate on the full test set.
        low: Lower end of the interval.
        high: Upper end of the interval.
        n_resamples: Resamples in which the statistic was defined (the others are skipped).
    """

    point: float
    low: float
    high: float
    n_resamples: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "point": self.point,
            "ci_low": self.low,
            "ci_high": self.high,
            "n_resamples": self.n_resamples,
        }


def resample_indices(
    n: int, n_bootstrap: int, seed: int, block: int | None = None
) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``n`` records, in blocks of rows.

    Resample ``b`` is row ``b`` of ``np.random.default_rng(seed).integers(0, n, (n_bootstrap, n))``;
    the blocking only bounds memory and does not change the draws.

    Args:
        n: Number of records.
        n_bootstrap: Number of resamples.
        seed: Seed of the generator.
        block: Rows per yielded block (default: about 4 million entries per block).

    Yields:
        int64 arrays of shape (b, n) with record positions drawn with replacement.
    """
    if n < 1:
        raise ValueError("cannot bootstrap an empty test set")
    rng = np.random.default_rng(seed)
    block = block or max(1, _BLOCK_ENTRIES // n)
    for start in range(0, n_bootstrap, block):
        yield rng.integers(0, n, size=(min(block, n_bootstrap - start), n))


def _weights(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each record appears in each resample: (b, n) counts from (b, n) indices."""
    b = indices.shape[0]
    offsets = (np.arange(b, dtype=np.int64) * n)[:, None]  # (b, 1)
    counts = np.bincount((indices + offsets).ravel(), minlength=b * n).reshape(b, n)
    # The per-label gathers are memory-bound: store counts in the smallest integer type that
    # holds them (a record is rarely drawn more than ~12 times, so int8 nearly always).
    for dtype in (np.int8, np.int16):
        if counts.max(initial=0) <= np.iinfo(dtype).max:
            return counts.astype(dtype)
    return counts.astype(np.int32)


class _LabelRanks:
    """Static sort of one label's valid records, reused by every resample.

    For each positive i, ``below[i]`` negatives score strictly lower and ``upto[i]`` score
    lower or equal (positions into the negatives sorted by score).
    """

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        valid = np.flatnonzero(~np.isnan(y))
        yv, pv = y[valid], p[valid]
        neg = valid[yv == 0]
        neg_scores = pv[yv == 0]
        order = np.argsort(neg_scores, kind="stable")
        self.neg_rows = neg[order]  # (n_neg,) record positions sorted by score
        sorted_neg = neg_scores[order]
        self.pos_rows = valid[yv == 1]  # (n_pos,)
        pos_scores = pv[yv == 1]
        self.below = np.searchsorted(sorted_neg, pos_scores, side="left")  # (n_pos,)
        self.upto = np.searchsorted(sorted_neg, pos_scores, side="right")  # (n_pos,)

    def auroc(self, w: np.ndarray) -> np.ndarray:
        """AUROC per resample from record counts ``w`` (b, n); NaN without both classes."""
        b = w.shape[0]
        wn = w[:, self.neg_rows]  # (b, n_neg)
        cum = np.zeros((b, wn.shape[1] + 1), dtype=np.int64 if w.shape[1] >= 2**31 else np.int32)
        np.cumsum(wn, axis=1, dtype=cum.dtype, out=cum[:, 1:])  # (b, n_neg + 1)
        wp = w[:, self.pos_rows].astype(np.int64)  # (b, n_pos)
        # Twice the Mann-Whitney U: each positive counts the negatives below it twice and
        # tied negatives once; integers, so the only rounding is the final division.
        twice_u = (wp * (cum[:, self.below] + cum[:, self.upto])).sum(axis=1)  # (b,)
        n_pairs = wp.sum(axis=1) * cum[:, -1].astype(np.int64)  # (b,) positive-negative pairs
        with np.errstate(invalid="ignore", divide="ignore"):
            out = twice_u / (2.0 * n_pairs)
        out[n_pairs == 0] = np.nan
        return out


def _check_shapes(target: np.ndarray, prob: np.ndarray) -> None:
    if target.shape != prob.shape or target.ndim != 2:
        raise ValueError(
            f"target and prob must both be (N, K); got {target.shape} and {prob.shape}"
        )


def auroc_per_label(target: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """AUROC of each label on all records; NaN where a label lacks either class.

    Args:
        target: (N, K) with 0/1 and NaN for missing.
        prob: (N, K) scores.

    Returns:
        (K,) float64, equal to ``sklearn.metrics.roc_auc_score`` per label on the non-missing
        records (up to the last bit).
    """
    _check_shapes(target, prob)
    ones = np.ones((1, target.shape[0]), dtype=np.int64)  # the identity "resample"
    return np.array(
        [_LabelRanks(target[:, k], prob[:, k]).auroc(ones)[0] for k in range(target.shape[1])]
    )


def bootstrap_auroc(
    target: np.ndarray, prob: np.ndarray, n_bootstrap: int, seed: int, labels: np.ndarray
) -> np.ndarray:
    """Per-resample AUROC of the selected labels.

    Args:
        target: (N, K) with 0/1 and NaN for missing.
        prob: (N, K) scores.
        n_bootstrap: Number of resamples (rows of :func:`resample_indices`).
        seed: Bootstrap seed.
        labels: Column indices to evaluate (K',).

    Returns:
        (n_bootstrap, K') float64; NaN where a resample lacks either class of a label.
    """
    _check_shapes(target, prob)
    n = target.shape[0]
    ranks = [_LabelRanks(target[:, k], prob[:, k]) for k in labels]
    out = np.empty((n_bootstrap, len(ranks)))
    start = 0
    for idx in resample_indices(n, n_bootstrap, seed):
        w = _weights(idx, n)  # (b, N)
        for j, r in enumerate(ranks):
            out[start : start + len(w), j] = r.auroc(w)
        start += len(w)
    return out


def percentile_interval(point: float, samples: np.ndarray, level: float = CI_LEVEL) -> Estimate:
    """Point estimate plus percentiles of the resampled differences (PROTOCOL.md).

    With deltas ``d_b = theta*_b - theta`` the interval is
    ``[theta + q_{(1-level)/2}(d), theta + q_{(1+level)/2}(d)]``, which equals the
    percentile interval of ``theta*``; resamples where the statistic is undefined (NaN) are
    left out and the count of the others is reported.
    """
    deltas = np.asarray(samples, dtype=np.float64) - point
    deltas = deltas[~np.isnan(deltas)]
    if np.isnan(point) or deltas.size == 0:
        return Estimate(float(point), float("nan"), float("nan"), int(deltas.size))
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(deltas, [tail, 100.0 - tail])
    return Estimate(float(point), float(point + lo), float(point + hi), int(deltas.size))


def macro(per_label: np.ndarray) -> np.ndarray:
    """Mean over labels (last axis) skipping NaN; NaN where no label is defined."""
    per_label = np.atleast_2d(per_label)
    defined = ~np.isnan(per_label)
    count = defined.sum(axis=-1)
    total = np.where(defined, per_label, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def paired_difference(
    point_a: float, boot_a: np.ndarray, point_b: float, boot_b: np.ndarray
) -> Estimate:
    """Difference ``a - b`` of two statistics computed on the same resamples."""
    return percentile_interval(point_a - point_b, np.asarray(boot_a) - np.asarray(boot_b))


def gap_bridged(
    method: tuple[float, np.ndarray],
    baseline: tuple[float, np.ndarray],
    upper: tuple[float, np.ndarray],
) -> Estimate:
    """Share of the baseline-to-upper gap the method closes: (m - s) / (u - s).

    Each tuple is (point, per-resample values on the same resamples). Resamples with a zero
    gap are left out; the interval is wide (and unstable) when the gap is small.
    """
    (m, mb), (s, sb), (u, ub) = method, baseline, upper
    with np.errstate(invalid="ignore", divide="ignore"):
        point = (m - s) / (u - s) if u != s else float("nan")
        boot = (np.asarray(mb) - sb) / (np.asarray(ub) - sb)
    boot = np.where(np.isfinite(boot), boot, np.nan)
    return percentile_interval(float(point), boot)
