"""label_fraction: nested, patient-grouped, stratified training subsets with labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_splits import cfg, write_inputs

from pipeline.data.label_subset import labelled_train_ids
from pipeline.data.splits import make_splits, stage_ids

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


@pytest.fixture(scope="module")
def subsets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | dict[float, Path]]:
    """Splits, id lists and the labelled training subset at each fraction."""
    tmp = tmp_path_factory.mktemp("label_fraction")
    cohort, labels = write_inputs(tmp, n_subjects=1500)
    c = cfg(n_folds=10, train_folds=list(range(8)), val_folds=[8], test_folds=[9])
    make_splits(cohort, labels, tmp / "folds.parquet", c)
    pl.read_parquet(cohort).select("study_id").write_parquet(tmp / "index.parquet")
    ids = {p: tmp / f"{p}_ids.parquet" for p in ("train", "val", "test")}
    stage_ids(tmp / "folds.parquet", cohort, tmp / "index.parquet", ids, c)
    out = {f: tmp / f"labelled_{f}.parquet" for f in FRACTIONS}
    for f, path in out.items():
        labelled_train_ids(ids["train"], tmp / "folds.parquet", cohort, f, path)
    return {"cohort": cohort, "labels": labels, **ids, "labelled": out}


def _subjects(path: Path, cohort: Path) -> set[int]:
    ids = pl.read_parquet(path).join(pl.read_parquet(cohort), on="study_id")
    return set(ids["subject_id"])


def test_fraction_one_is_the_training_list(subsets: dict) -> None:
    assert pl.read_parquet(subsets["labelled"][1.0]).equals(pl.read_parquet(subsets["train"]))


def test_subsets_nested_grouped_and_inside_train(subsets: dict) -> None:
    cohort = subsets["cohort"]
    train_records = pl.read_parquet(subsets["train"]).join(pl.read_parquet(cohort), on="study_id")
    held_out = _subjects(subsets["val"], cohort) | _subjects(subsets["test"], cohort)
    previous: set[int] = set()
    n_train = train_records["subject_id"].n_unique()
    for f in FRACTIONS:
        sel = pl.read_parquet(subsets["labelled"][f])
        subjects = _subjects(subsets["labelled"][f], cohort)
        assert previous <= subjects  # nested: the smaller subset lies inside
        assert not subjects & held_out  # never a validation or test subject
        # patient-grouped: a labelled subject brings all of its training records
        of_subjects = train_records.filter(pl.col("subject_id").is_in(list(subjects)))
        assert set(sel["study_id"]) == set(of_subjects["study_id"])
        assert abs(len(subjects) - f * n_train) <= 0.02 * n_train  # whole balanced blocks
        previous = subjects


def test_each_label_keeps_its_rate_across_fractions(subsets: dict) -> None:
    lab = pl.read_parquet(subsets["labels"]).join(
        pl.read_parquet(subsets["cohort"]).select("study_id", "subject_id"), on="study_id"
    )
    per_subject = lab.group_by("subject_id").agg(pl.col("^L\\d+$").max())
    rates = {}
    for f in FRACTIONS:
        subjects = list(_subjects(subsets["labelled"][f], subsets["cohort"]))
        sub = per_subject.filter(pl.col("subject_id").is_in(subjects))
        rates[f] = sub.select(pl.col("^L\\d+$").mean()).row(0)
    full = np.array(rates[1.0])
    for f in FRACTIONS[:-1]:
        # balanced blocks: even the 10 % subset (~120 subjects) tracks every label (max
        # deviation 0.026 measured; random 10 % subsets: median 0.053)
        assert np.abs(np.array(rates[f]) - full).max() < 0.035, (f, rates[f], full)


def test_label_fraction_outside_range_or_too_small_is_refused(subsets: dict, tmp_path) -> None:
    args = (subsets["train"], subsets["train"].parent / "folds.parquet", subsets["cohort"])
    with pytest.raises(ValueError, match=r"label_fraction must be in \(0, 1\]"):
        labelled_train_ids(*args, 0.0, tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="leaves 0 of"):
        labelled_train_ids(*args, 1e-6, tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()
