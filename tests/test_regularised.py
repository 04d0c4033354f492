"""method_regularised: stage 2 plus L2-SP (Li et al. 2018) on the tiny training world.

With ``l2sp_alpha: 0`` it is stage 2 exactly (bit-identical to method_diagnoses); with a
strong alpha the encoder stays nearer its stage-1 weights and the history shows both terms.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import (
    build_world,
    model_cfg,
    pretrain_cfg,
    runtime,
    stage_cfg,
)

from pipeline.registry import spec
from pipeline.train.pretrain import pretrain
from pipeline.train.stage_config import RegularisedConfig, l2sp_alpha, stage_config
from pipeline.train.supervised import train_supervised

DIAG = {"epochs": 2, "freeze_blocks": 1, "encoder_lr": 1e-2}


def _regularised(alpha: float) -> RegularisedConfig:
    return RegularisedConfig(**asdict(stage_cfg(**DIAG)), l2sp_alpha=alpha)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage 1, then method_diagnoses and method_regularised (alpha 0 and 50) from it."""
    root = tmp_path_factory.mktemp("regularised")
    world = build_world(root)
    shared = (model_cfg(), runtime())
    pretrain(world.pretrain_inputs(), root / "pretrain", pretrain_cfg(epochs=2), *shared)
    inputs = world.supervised_inputs("diagnoses", root / "pretrain")
    for name, kind, cfg in (
        ("method_diagnoses", "method_diagnoses", stage_cfg(**DIAG)),
        ("alpha0", "method_regularised", _regularised(0.0)),
        ("alpha50", "method_regularised", _regularised(50.0)),
    ):
        train_supervised(kind, inputs, root / name, root / f"{name}.npz", cfg, *shared)
    return root


def _weights(root: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(root / name / "model.safetensors"))


def test_alpha_zero_is_stage_two_bit_for_bit(runs: Path) -> None:
    plain, off = _weights(runs, "method_diagnoses"), _weights(runs, "alpha0")
    assert plain.keys() == off.keys()
    assert all(plain[k].equal(off[k]) for k in plain)
    a, b = np.load(runs / "method_diagnoses.npz"), np.load(runs / "alpha0.npz")
    assert np.array_equal(a["prob"], b["prob"])
    history = pl.read_csv(runs / "alpha0" / "history.tsv", separator="\t")
    assert "l2sp" not in history.columns  # nothing added to the loss, nothing logged


def test_strong_pull_keeps_the_encoder_near_stage_one(runs: Path) -> None:
    start = load_file(str(runs / "pretrain" / "encoder.safetensors"))

    def distance(name: str) -> float:
        w = _weights(runs, name)
        trained = [k for k in start if k.startswith("blocks.1.")]  # block 0 is frozen
        return sum(float(((w[f"encoder.{k}"] - start[k]) ** 2).sum()) for k in trained)

    assert 0 < distance("alpha50") < distance("method_diagnoses")


def test_history_and_model_json_show_the_l2sp_term(runs: Path) -> None:
    history = pl.read_csv(runs / "alpha50" / "history.tsv", separator="\t")
    trained = history.filter(pl.col("epoch") > 0)
    assert {"loss", "bce", "l2sp"} <= set(history.columns) and trained.height > 0
    # epoch means of per-batch sums: loss = bce + l2sp up to the TSV's 6 digits
    np.testing.assert_allclose(trained["loss"], trained["bce"] + trained["l2sp"], rtol=1e-4)
    assert (trained["l2sp"] > 0).all()
    meta = json.loads((runs / "alpha50" / "model.json").read_text())
    assert meta["config"]["l2sp_alpha"] == 50.0 and meta["model"] == "method_regularised"


def test_config_section_and_registry_entry() -> None:
    entry = spec("method_regularised")
    assert (entry.task, entry.init, entry.tabular, entry.head) == (
        "diagnoses",
        "pretrain",
        None,
        "mlp",
    )
    assert entry.section == "method_regularised" and entry.row is not None
    built = stage_config(entry.section, {"l2sp_alpha": 0.2, "lr": 1e-3})
    assert isinstance(built, RegularisedConfig) and l2sp_alpha(built) == 0.2
    assert l2sp_alpha(stage_cfg()) == 0.0  # every other section: no pull
    with pytest.raises(ValueError, match="l2sp_alpha must be >= 0"):
        RegularisedConfig(l2sp_alpha=-1.0)
