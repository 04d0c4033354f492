"""The shared training loop: a killed run resumes to the same weights bit for bit (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from train_fixtures import (
    build_world,
    model_cfg,
    pretrain_cfg,
    runtime,
    stage_cfg,
)

from pipeline.train.pretrain import pretrain
from pipeline.train.supervised import train_supervised


class Killed(Exception):
    """Stands in for SIGKILL: raised after an epoch's checkpoint was written."""


def _kill_after(epoch: int):
    def callback(e: int, record: dict[str, float]) -> None:
        if e == epoch:
            raise Killed

    return callback


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("engine"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].equal(wb[k]), k


def test_pretrain_resume_is_bit_identical(world, tmp_path: Path) -> None:
    cfg, inputs = pretrain_cfg(epochs=3), world.pretrain_inputs()
    args = (cfg, model_cfg())
    full = pretrain(inputs, tmp_path / "full", *args, runtime(checkpoint_dir=tmp_path / "ck_full"))
    assert not (tmp_path / "ck_full").exists()  # deleted after success

    ckpt = tmp_path / "ck"
    with pytest.raises(Killed):
        pretrain(
            inputs,
            tmp_path / "out",
            *args,
            runtime(checkpoint_dir=ckpt, on_epoch_end=_kill_after(2)),
        )
    assert (ckpt / "last.pt").exists() and not (tmp_path / "out").exists()
    resumed = pretrain(inputs, tmp_path / "out", *args, runtime(checkpoint_dir=ckpt))
    assert resumed.resumed_at == 2
    assert not ckpt.exists()
    _assert_same_weights(
        full_dir := tmp_path / "full" / "encoder.safetensors",
        tmp_path / "out" / "encoder.safetensors",
    )
    assert full_dir.exists()
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.probe_auroc == full.probe_auroc


def test_changed_config_starts_fresh(world, tmp_path: Path) -> None:
    inputs, ckpt = world.pretrain_inputs(), tmp_path / "ck"
    with pytest.raises(Killed):
        pretrain(
            inputs,
            tmp_path / "a",
            pretrain_cfg(epochs=3),
            model_cfg(),
            runtime(checkpoint_dir=ckpt, on_epoch_end=_kill_after(1)),
        )
    other = pretrain(
        inputs,
        tmp_path / "b",
        pretrain_cfg(epochs=3, lr=1e-3),
        model_cfg(),
        runtime(checkpoint_dir=ckpt),
    )
    assert other.resumed_at == 0
    assert len(other.history) == 3


def test_supervised_resume_is_bit_identical(world, tmp_path: Path) -> None:
    inputs = world.supervised_inputs("diagnoses")
    args = (stage_cfg(epochs=3), model_cfg())

    def run(name: str, **kw) -> None:
        train_supervised(
            "multimodal_classification",
            inputs,
            tmp_path / name,
            tmp_path / f"{name}.npz",
            *args,
            runtime(**kw),
        )

    run("full", checkpoint_dir=tmp_path / "ck_full")
    with pytest.raises(Killed):
        run("out", checkpoint_dir=tmp_path / "ck", on_epoch_end=_kill_after(1))
    run("out", checkpoint_dir=tmp_path / "ck")
    _assert_same_weights(
        tmp_path / "full" / "model.safetensors", tmp_path / "out" / "model.safetensors"
    )
    a, b = np.load(tmp_path / "full.npz"), np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(a["prob"], b["prob"])
    assert (tmp_path / "full" / "history.tsv").read_text() == (
        tmp_path / "out" / "history.tsv"
    ).read_text()
