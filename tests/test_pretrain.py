"""Stage 1: a tiny Barlow Twins run learns, beats chance on the probe, writes its contract."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import build_world, model_cfg, pretrain_cfg, runtime

from pipeline.models import build_ecg_encoder
from pipeline.train.data import read_ids
from pipeline.train.pretrain import pretrain


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pretrain")
    world = build_world(root)
    out = root / "pretrain"
    result = pretrain(world.pretrain_inputs(), out, pretrain_cfg(epochs=5), model_cfg(), runtime())
    return world, out, result


def test_loss_falls_and_probe_beats_chance(run) -> None:
    _, out, result = run
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert min(h["val_loss"] for h in result.history) < result.history[0]["val_loss"]
    probe = json.loads((out / "probe.json").read_text())
    assert probe["macro_auroc"] == result.probe_auroc
    assert probe["n_labels"] == 3
    assert probe["macro_auroc"] > 0.65  # chance is 0.5; the ECGs encode two of the labels


def test_outputs_rebuild_the_encoder(run) -> None:
    world, out, result = run
    assert sorted(p.name for p in out.iterdir()) == [
        "encoder.safetensors",
        "history.tsv",
        "model.json",
        "probe.json",
    ]
    meta = json.loads((out / "model.json").read_text())
    encoder = build_ecg_encoder(meta["ecg_encoder"])
    encoder.load_state_dict(load_file(str(out / "encoder.safetensors")))  # strict
    assert encoder(torch.zeros(2, 12, 50)).shape == (2, 16)
    assert meta["best_epoch"] == result.best_epoch
    # Imputation statistics are the training fold's, saved with the model.
    features = pl.read_parquet(world.features)
    train = features.filter(pl.col("study_id").is_in(read_ids(world.ids["train"]).tolist()))
    tab = meta["tabular"]
    i = tab["continuous"].index("potassium_mean")
    expected = np.median(train.get_column("potassium_mean").drop_nulls().to_numpy())
    assert tab["median"][i] == pytest.approx(expected)
    assert {r["column"] for r in tab["manifest"]} == set(features.columns) - {"study_id"}
    history = pl.read_csv(out / "history.tsv", separator="\t")
    assert history.height == 5
    assert {"loss", "on_diag", "off_diag", "lr", "val_loss"} <= set(history.columns)
    assert not any("id" in c for c in history.columns)
