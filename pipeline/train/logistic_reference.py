"""The logistic-regression reference: how well a linear classifier reads a frozen embedding.

Two places score an embedding with it: stage 1's collapse check (a collapsed encoder, with
constant embeddings, scores about 0.5; :mod:`pipeline.train.collapse_check`) and every
supervised model's summary, where its trained head should score at least as well on
validation as this reference on the same frozen embedding (``probe_val_auroc``). Not to be
confused with the knowledge probe (:mod:`pipeline.evaluation.probe`), which predicts
clinical variables from the final embeddings.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pipeline.train.predict import macro_auroc


def logistic_reference(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, float]:
    """One-vs-rest logistic regression on standardised embeddings, scored on ``x_val``.

    Labels lacking a class among the observed (non-NaN) fit or validation targets are
    skipped. A collapsed encoder (constant embeddings) scores about 0.5.

    Args:
        x_fit, x_val: (N, D) embeddings (crop-averaged).
        y_fit, y_val: (N, T) 0/1 targets, NaN where missing.

    Returns:
        ``val_auroc`` (macro over usable labels), ``n_labels`` and ``n_labels_skipped``.
    """
    scaler = StandardScaler().fit(x_fit)
    a, b = scaler.transform(x_fit), scaler.transform(x_val)
    prob = np.full(y_val.shape, np.nan, dtype=np.float64)
    for j in range(y_fit.shape[1]):
        seen_fit, seen_val = ~np.isnan(y_fit[:, j]), ~np.isnan(y_val[:, j])
        yf, yv = y_fit[seen_fit, j], y_val[seen_val, j]
        if len(np.unique(yf)) < 2 or len(np.unique(yv)) < 2:
            continue
        clf = LogisticRegression(C=c, max_iter=max_iter)
        # One BLAS thread: on small problems extra threads only spin (5x slower on 2 cores).
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)  # lbfgs may stop at max_iter
            clf.fit(a[seen_fit], yf)
        prob[:, j] = clf.predict_proba(b)[:, 1]
    usable = ~np.isnan(prob).all(axis=0) if len(prob) else np.zeros(0, dtype=bool)
    auroc, n_used = macro_auroc(y_val[:, usable], prob[:, usable])
    return {
        "val_auroc": auroc,
        "n_labels": float(n_used),
        "n_labels_skipped": float(y_fit.shape[1] - n_used),
    }
