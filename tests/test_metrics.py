"""AUROC, bootstrap intervals and paired differences against independent computations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.evaluation.evaluate import EvalConfig, evaluate_predictions
from pipeline.evaluation.predictions import check_paired, load_predictions
from pipeline.metrics import (
    auroc_per_label,
    gap_bridged,
    paired_difference,
    resample_indices,
)


def _data(seed: int, n: int = 150, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = (rng.random((n, k)) < 0.3).astype(np.float32)
    # Scores rounded to one decimal: many ties, within and across classes.
    prob = np.round(np.clip(0.3 * target + 0.7 * rng.random((n, k)), 0, 1), 1)
    target[rng.random((n, k)) < 0.15] = np.nan
    return target, prob.astype(np.float32)


def _save(path: Path, target: np.ndarray, prob: np.ndarray, study_id: np.ndarray) -> Path:
    np.savez(
        path,
        study_id=study_id,
        prob=prob,
        target=target,
        labels=np.array([f"L{i}" for i in range(target.shape[1])]),
        task=np.array("diagnoses"),
    )
    return path


def _sk(y: np.ndarray, p: np.ndarray) -> float:
    ok = ~np.isnan(y)
    y, p = y[ok], p[ok]
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def test_point_auroc_matches_sklearn_with_ties() -> None:
    target, prob = _data(0)
    ours = auroc_per_label(target, prob)
    ref = np.array([_sk(target[:, k], prob[:, k]) for k in range(target.shape[1])])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    assert len(np.unique(prob)) <= 11  # the ties are real


def test_resample_blocks_do_not_change_the_draws() -> None:
    whole = np.random.default_rng(5).integers(0, 40, size=(23, 40))
    for block in (1, 7, 23, 100):
        np.testing.assert_array_equal(
            np.concatenate(list(resample_indices(40, 23, 5, block))), whole
        )


def test_bootstrap_ci_matches_independent_percentiles(tmp_path: Path) -> None:
    target, prob = _data(1)
    n = len(target)
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    pred = _save(tmp_path / "m.npz", target, prob, ids)
    cfg = EvalConfig(n_bootstrap=60, seed=11)
    out = evaluate_predictions(pred, tmp_path / "m.json", tmp_path / "m.csv", cfg)

    # Independent recomputation: sklearn on every resample, numpy percentiles.
    idx = np.random.default_rng(11).integers(0, n, size=(60, n))
    per = np.array(
        [[_sk(target[r, k], prob[r, k]) for k in range(target.shape[1])] for r in idx]
    )  # (60, K)
    point = np.nanmean([_sk(target[:, k], prob[:, k]) for k in range(target.shape[1])])
    boot = np.nanmean(per, axis=1)
    low, high = point + np.percentile(boot - point, [2.5, 97.5])
    m = out["macro_auroc"]
    assert m["point"] == pytest.approx(point, abs=1e-12)
    assert (m["ci_low"], m["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert m["ci_low"] <= m["point"] <= m["ci_high"]
    stored = json.loads((tmp_path / "m.json").read_text())["bootstrap"]["macro_auroc"]
    np.testing.assert_allclose(stored, boot, atol=1e-12)

    csv = pl.read_csv(tmp_path / "m.csv")
    k = 2
    point_k = _sk(target[:, k], prob[:, k])
    lo_k, hi_k = np.percentile(per[:, k][~np.isnan(per[:, k])] - point_k, [2.5, 97.5])
    row = csv.row(k, named=True)
    assert row["auroc"] == pytest.approx(point_k, abs=1e-12)
    assert row["ci_low"] == pytest.approx(row["auroc"] + lo_k, abs=1e-12)
    assert row["ci_high"] == pytest.approx(row["auroc"] + hi_k, abs=1e-12)


def test_labels_without_both_classes_are_skipped_and_counted(tmp_path: Path) -> None:
    target, prob = _data(2, n=80, k=5)
    target[:, 1] = 0.0  # no positive
    target[:, 3] = np.nan  # never measured
    target[:, 4] = 0.0
    target[7, 4] = 1.0  # a single positive: absent from many resamples
    pred = _save(tmp_path / "m.npz", target, prob, np.arange(80, dtype=np.int64))
    cfg = EvalConfig(n_bootstrap=100, seed=0)
    out = evaluate_predictions(pred, tmp_path / "m.json", tmp_path / "m.csv", cfg)
    assert out["n_labels"] == 5
    assert out["n_labels_evaluated"] == 3
    assert out["n_labels_skipped"] == 2
    assert sorted(s["label"] for s in out["skipped_labels"]) == ["L1", "L3"]
    csv = pl.read_csv(tmp_path / "m.csv")
    assert csv.filter(pl.col("label") == "L1")["status"][0].startswith("skipped")
    single = csv.filter(pl.col("label") == "L4").row(0, named=True)
    # About (1 - 1/n)^n of the resamples miss the lone positive and skip the label there.
    assert 40 < single["n_resamples"] < 85
    expected = np.nanmean([_sk(target[:, k], prob[:, k]) for k in (0, 2, 4)])
    assert out["macro_auroc"]["point"] == pytest.approx(expected, abs=1e-12)


def test_paired_difference_of_identical_models_is_exactly_zero(tmp_path: Path) -> None:
    target, prob = _data(3)
    ids = np.random.default_rng(0).choice(10**6, size=len(target), replace=False)
    a = _save(tmp_path / "a.npz", target, prob, ids)
    perm = np.random.default_rng(1).permutation(len(target))
    b = _save(tmp_path / "b.npz", target[perm], prob[perm], ids[perm])  # rows shuffled
    cfg = EvalConfig(n_bootstrap=50, seed=4)
    summaries = [
        evaluate_predictions(p, p.with_suffix(".json"), p.with_suffix(".csv"), cfg) for p in (a, b)
    ]
    check_paired(load_predictions(a), load_predictions(b))
    boots = [np.array(s["bootstrap"]["macro_auroc"], dtype=float) for s in summaries]
    np.testing.assert_array_equal(boots[0], boots[1])
    est = paired_difference(
        summaries[0]["macro_auroc"]["point"],
        boots[0],
        summaries[1]["macro_auroc"]["point"],
        boots[1],
    )
    assert (est.point, est.low, est.high) == (0.0, 0.0, 0.0)


def test_paired_requires_same_records(tmp_path: Path) -> None:
    target, prob = _data(4)
    n = len(target)
    a = load_predictions(_save(tmp_path / "a.npz", target, prob, np.arange(n)))
    b = load_predictions(_save(tmp_path / "b.npz", target, prob, np.arange(1, n + 1)))
    with pytest.raises(ValueError, match="same test records"):
        check_paired(a, b)


def test_gap_bridged() -> None:
    rng = np.random.default_rng(0)
    s = 0.70 + rng.normal(0, 0.01, 200)
    u = s + 0.10
    m = s + 0.05
    est = gap_bridged((0.75, m), (0.70, s), (0.80, u))
    assert est.point == pytest.approx(0.5)
    assert est.low == pytest.approx(0.5) and est.high == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prob": np.full((4, 2), 1.5, dtype=np.float32)}, "prob values"),
        ({"target": np.full((4, 2), 2.0, dtype=np.float32)}, "target values"),
        ({"study_id": np.array([1, 1, 2, 3])}, "duplicate study_id"),
        ({"task": np.array("other")}, "task"),
    ],
)
def test_bad_predictions_name_the_file(tmp_path: Path, change: dict, message: str) -> None:
    arrays = {
        "study_id": np.arange(4),
        "prob": np.full((4, 2), 0.5, dtype=np.float32),
        "target": np.zeros((4, 2), dtype=np.float32),
        "labels": np.array(["A", "B"]),
        "task": np.array("labs"),
    } | change
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as err:
        load_predictions(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)
