"""Stages 2-3 and baselines: freezing, one embedding for both heads, masked BCE, npz contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from train_fixtures import (
    LAB_TARGETS,
    LABELS,
    build_world,
    model_cfg,
    pretrain_cfg,
    runtime,
    stage_cfg,
    train_cfg,
)

from pipeline.train.data import read_ids
from pipeline.train.pretrain import pretrain
from pipeline.train.supervised import predict_model, train_supervised


@pytest.fixture(scope="module")
def method(tmp_path_factory: pytest.TempPathFactory):
    """Stage 1 -> method_diagnoses (first block frozen) -> method_labs (encoder frozen)."""
    root = tmp_path_factory.mktemp("method")
    world = build_world(root)
    shared = (model_cfg(), runtime())
    pretrain(world.pretrain_inputs(), root / "pretrain", pretrain_cfg(epochs=2), *shared)
    diag_cfg = stage_cfg(epochs=3, freeze_blocks=1, encoder_lr=1e-2)
    train_supervised(
        "method_diagnoses",
        world.supervised_inputs("diagnoses", root / "pretrain"),
        root / "method_diagnoses",
        root / "method_diagnoses.npz",
        diag_cfg,
        *shared,
    )
    labs_cfg = stage_cfg(epochs=2, freeze_encoder=True)
    train_supervised(
        "method_labs",
        world.supervised_inputs("labs", root / "method_diagnoses"),
        root / "method_labs",
        root / "method_labs.npz",
        labs_cfg,
        *shared,
    )
    return world, root


def test_frozen_blocks_are_bit_identical(method) -> None:
    _, root = method
    before = load_file(str(root / "pretrain" / "encoder.safetensors"))
    after = load_file(str(root / "method_diagnoses" / "model.safetensors"))
    frozen = [k for k in before if k.startswith(("input_proj.", "blocks.0."))]
    trained = [k for k in before if k.startswith("blocks.1.")]
    assert frozen and trained
    for k in frozen:
        assert before[k].equal(after[f"encoder.{k}"]), k
    assert any(not before[k].equal(after[f"encoder.{k}"]) for k in trained)


def test_lab_head_leaves_diagnoses_unchanged(method) -> None:
    world, root = method
    diag = np.load(root / "method_diagnoses.npz")
    test_ids = read_ids(world.ids["test"])
    again = predict_model(
        root / "method_labs", world.shard_index, test_ids, train_cfg(), head="diagnosis_head"
    )
    np.testing.assert_array_equal(again, diag["prob"])
    # ...and the lab explanations come from the same model file and embedding.
    labs = predict_model(root / "method_labs", world.shard_index, test_ids, train_cfg())
    np.testing.assert_allclose(labs, np.load(root / "method_labs.npz")["prob"], rtol=0, atol=1e-6)
    meta = json.loads((root / "method_labs" / "model.json").read_text())
    assert meta["heads"]["diagnosis_head"]["labels"] == LABELS
    assert meta["heads"]["head"]["labels"] == LAB_TARGETS


@pytest.mark.parametrize("name", ["method_diagnoses", "method_labs"])
def test_predictions_match_contract(method, name: str) -> None:
    world, root = method
    z = np.load(root / f"{name}.npz")
    assert set(z.files) == {"study_id", "prob", "target", "labels", "task"}
    test_ids = read_ids(world.ids["test"])
    np.testing.assert_array_equal(z["study_id"], test_ids)
    assert z["study_id"].dtype == np.int64
    labels = LABELS if name == "method_diagnoses" else LAB_TARGETS
    assert z["labels"].dtype.kind == "U" and z["labels"].tolist() == labels
    assert z["prob"].dtype == z["target"].dtype == np.float32
    assert z["prob"].shape == z["target"].shape == (len(test_ids), len(labels))
    assert ((z["prob"] >= 0) & (z["prob"] <= 1)).all()
    assert z["task"].shape == () and str(z["task"]) == ("diagnoses" if "diag" in name else "labs")
    if name == "method_labs":  # unmeasured labs stay missing
        assert np.isnan(z["target"]).any()
    else:
        assert not np.isnan(z["target"]).any()


@pytest.mark.parametrize(
    ("kind", "task", "group_has_labs"),
    [("signal_only", "diagnoses", None), ("multimodal_labs", "labs", False)],
)
def test_baselines(tmp_path: Path, kind: str, task: str, group_has_labs: bool | None) -> None:
    world = build_world(tmp_path)
    res = train_supervised(
        kind,
        world.supervised_inputs(task),
        tmp_path / kind,
        tmp_path / f"{kind}.npz",
        stage_cfg(epochs=2),
        model_cfg(),
        runtime(),
    )
    assert 0.0 <= res.test_auroc <= 1.0
    meta = json.loads((tmp_path / kind / "model.json").read_text())
    if group_has_labs is None:
        assert meta["tabular"] is None
    else:  # multimodal_labs sees routine features only
        assert meta["tabular"]["group"] == "routine"
        assert "potassium_mean" not in meta["tabular"]["continuous"]


def test_unknown_model_is_refused(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    with pytest.raises(ValueError, match="unknown model"):
        train_supervised(
            "lstm",
            world.supervised_inputs("diagnoses"),
            tmp_path / "m",
            tmp_path / "m.npz",
            stage_cfg(),
            model_cfg(),
            runtime(),
        )
