"""Tabular preprocessing: statistics from the training fold only, groups, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from train_fixtures import build_world

from pipeline.data.tabular import TabularPreprocessor, fit_tabular, read_manifest
from pipeline.train.data import read_ids


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("tab"))


def _poisoned(world) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Features whose val/test rows carry extreme values and an unseen category."""
    train, val = read_ids(world.ids["train"]), read_ids(world.ids["val"])
    df = pl.read_parquet(world.features)
    outside = ~pl.col("study_id").is_in(train.tolist())
    df = df.with_columns(
        pl.when(outside).then(1e6).otherwise(pl.col("age")).alias("age"),
        pl.when(outside).then(pl.lit("X")).otherwise(pl.col("gender")).alias("gender"),
    )
    return df, train, val


def test_statistics_use_training_rows_only(world) -> None:
    df, train, val = _poisoned(world)
    prep = fit_tabular(df, read_manifest(world.feature_manifest, "all"), train, "all")
    train_rows = df.filter(pl.col("study_id").is_in(train.tolist()))
    age = train_rows.get_column("age").to_numpy()
    potassium = train_rows.get_column("potassium_mean").drop_nulls().to_numpy()
    i_age, i_k = prep.continuous.index("age"), prep.continuous.index("potassium_mean")
    assert prep.median[i_age] == pytest.approx(np.median(age))
    assert prep.median[i_k] == pytest.approx(np.median(potassium))
    assert prep.mean[i_age] < 1e3  # the 1e6 of val/test rows never entered
    assert "X" not in prep.vocab["gender"]
    assert set(prep.vocab["gender"]) == {"F", "M"}
    # Unseen category and missing values map to code 0; masks mark observed values.
    arr = prep.transform(df, val)
    j = prep.categorical.index("gender")
    assert (arr.x_cat[:, j] == 0).all()
    val_k = df.filter(pl.col("study_id").is_in(val.tolist())).sort("study_id")
    observed = val_k.get_column("potassium_mean").is_not_null().to_numpy()
    np.testing.assert_array_equal(arr.x_mask[:, i_k], observed.astype(np.float32))
    # A missing value is imputed with the training median (standardised).
    imputed = (prep.median[i_k] - prep.mean[i_k]) / prep.std[i_k]
    assert np.allclose(arr.x_cont[~observed, i_k], imputed)
    assert arr.x_cont.dtype == np.float32 and arr.x_cat.dtype == np.int64


def test_routine_group_excludes_labs_and_json_round_trip(world, tmp_path: Path) -> None:
    df, train, val = _poisoned(world)
    routine = read_manifest(world.feature_manifest, "routine")
    prep = fit_tabular(df, routine, train, "routine")
    assert "potassium_mean" not in prep.continuous
    assert prep.continuous == ("age",) and set(prep.categorical) == {"gender", "acuity"}
    path = tmp_path / "prep.json"
    path.write_text(json.dumps(prep.to_dict()))
    again = TabularPreprocessor.from_dict(json.loads(path.read_text()))
    assert again == prep
    a, b = prep.transform(df, val), again.transform(df, val)
    np.testing.assert_array_equal(a.x_cont, b.x_cont)
    np.testing.assert_array_equal(a.x_cat, b.x_cat)


def test_bad_input_names_the_file(world) -> None:
    df = pl.read_parquet(world.features)
    manifest = read_manifest(world.feature_manifest, "all")
    with pytest.raises(ValueError, match=r"features\.parquet: 1 of"):
        fit_tabular(df, manifest, np.array([1], dtype=np.int64), "all", str(world.features))
    with pytest.raises(ValueError, match="columns missing"):
        fit_tabular(df.drop("age"), manifest, read_ids(world.ids["train"]), "all")
    with pytest.raises(ValueError, match="feature group"):
        read_manifest(world.feature_manifest, "labs")  # type: ignore[arg-type]
