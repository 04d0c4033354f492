"""Split-stage inputs too small for the settings stop with counts and the key, no output.

(Empty cohorts and unreachable label / lab thresholds are exercised through snakemake in
test_fault_cases.py; these are the split stages, driven through their functions.)
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.data.checks import TooLittleData
from pipeline.data.splits import make_splits, select_lab_targets, stage_ids
from tests.test_splits import cfg, write_inputs

SMALL = {"n_folds": 5, "train_folds": [0, 1, 2], "val_folds": [3], "test_folds": [4]}


def test_fewer_subjects_than_folds(tmp_path: Path) -> None:
    cohort, labels = write_inputs(tmp_path, n_subjects=4)
    with pytest.raises(TooLittleData, match=r"4 cohort subjects cannot fill splits\.n_folds=5"):
        make_splits(cohort, labels, tmp_path / "folds.parquet", cfg(**SMALL))
    assert not (tmp_path / "folds.parquet").exists()


def test_a_part_without_records_writes_no_id_list(tmp_path: Path) -> None:
    cohort, _ = write_inputs(tmp_path, n_subjects=20)
    subjects = pl.read_parquet(cohort)["subject_id"].unique().sort()
    # every subject in folds 0-3: the test fold 4 gets nobody
    folds = pl.DataFrame({"subject_id": subjects, "fold": [i % 4 for i in range(len(subjects))]})
    folds.cast({"fold": pl.Int32}).write_parquet(tmp_path / "folds.parquet")
    pl.read_parquet(cohort).select("study_id").write_parquet(tmp_path / "index.parquet")
    out = {p: tmp_path / f"{p}_ids.parquet" for p in ("train", "val", "test")}
    with pytest.raises(TooLittleData, match=r"0 of [\d,]+ sharded cohort ECGs fall in the test "
                       r"folds \[4\]; check splits\.test_folds"):  # fmt: skip
        stage_ids(tmp_path / "folds.parquet", cohort, tmp_path / "index.parquet", out, cfg(**SMALL))
    assert not any(p.exists() for p in out.values())  # not even the train list


def test_no_lab_target_reaches_min_per_class(tmp_path: Path) -> None:
    ids = pl.DataFrame({"study_id": list(range(10))})
    ids.write_parquet(tmp_path / "val.parquet")
    ids.write_parquet(tmp_path / "test.parquet")
    targets = ids.with_columns(K_high=pl.Series([1, 0] * 5, dtype=pl.Int8))
    targets.write_parquet(tmp_path / "lab_targets.parquet")
    args = (tmp_path / "lab_targets.parquet", tmp_path / "val.parquet", tmp_path / "test.parquet")
    assert select_lab_targets(*args, tmp_path / "ok.tsv", min_per_class=5) == ["K_high"]
    with pytest.raises(TooLittleData, match=r"0 of 1 lab targets reach lab_targets\."
                       r"min_per_class=6 .*\(best: 5\)"):  # fmt: skip
        select_lab_targets(*args, tmp_path / "sel.tsv", min_per_class=6)
    assert not (tmp_path / "sel.tsv").exists()
