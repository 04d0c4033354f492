"""ssl_ecg_only: stage 1 on two augmented ECG crops (no clinical data), then stage 2.

On the tiny training world: the ECG-only stage 1 reads no tabular file, its two crops are two
places in the same record, validation sees the same views every epoch, a killed run resumes
to the same weights (the augmentations come from the checkpointed generator), and the
model stage 2 builds on it trains like the method's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
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

from pipeline.train.augment import EcgAugmentConfig
from pipeline.train.data import ECGDataset, open_store, read_ids
from pipeline.train.pretrain import pretrain
from pipeline.train.supervised import train_supervised

AUGMENT = EcgAugmentConfig()


class Killed(Exception):
    """Stands in for SIGKILL after an epoch's checkpoint."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("ssl"))


def _ecg_only_inputs(world):
    return replace(world.pretrain_inputs(), features=None, feature_manifest=None)


def test_second_crop_is_another_place_of_the_same_record(world) -> None:
    store, ids = open_store(world.shard_index), read_ids(world.ids["train"])
    one = ECGDataset(store, ids, crop_samples=50, seed=3)
    two = ECGDataset(store, ids, crop_samples=50, seed=3, second_crop=True)
    moved = 0
    for i in range(len(ids)):
        a, b = one[i], two[i]
        assert np.array_equal(a["ecg"], b["ecg"])  # the first crop is unchanged
        record = store.get(int(ids[i])).astype(np.float32)  # (12, L)
        starts = [
            s
            for s in range(record.shape[1] - 49)
            if np.array_equal(record[:, s : s + 50], b["ecg_view"])
        ]
        assert starts, f"record {i}: the second crop is not a window of the record"
        moved += not np.array_equal(b["ecg"], b["ecg_view"])
    assert moved > len(ids) // 2
    with pytest.raises(ValueError, match="second_crop needs mode 'train'"):
        ECGDataset(store, ids, crop_samples=50, mode="eval", second_crop=True)


@pytest.fixture(scope="module")
def stage1(world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stage1") / "pretrain_ecg_only"
    args = (pretrain_cfg(epochs=3), model_cfg(), runtime())
    pretrain(_ecg_only_inputs(world), out, *args, augment=AUGMENT)
    return out


def test_ecg_only_stage_one_writes_an_encoder_without_tabular_parts(stage1: Path) -> None:
    meta = json.loads((stage1 / "model.json").read_text())
    assert meta["partner"] == "ecg"
    assert meta["tabular"] is None and meta["tabular_encoder"] is None
    assert meta["pretrain"]["augment"]["lead_mask_prob"] == AUGMENT.lead_mask_prob
    weights = load_file(str(stage1 / "encoder.safetensors"))
    assert weights and all(torch.isfinite(w).all() for w in weights.values())
    history = (stage1 / "history.tsv").read_text().splitlines()
    assert len(history) == 1 + 3  # header + 3 epochs
    probe = json.loads((stage1 / "probe.json").read_text())
    assert 0.0 <= probe["macro_auroc"] <= 1.0


def test_resume_is_bit_identical(world, tmp_path: Path) -> None:
    """The views come from torch's global generator, which the checkpoint carries."""
    args = (pretrain_cfg(epochs=3), model_cfg())
    inputs = _ecg_only_inputs(world)
    full = pretrain(inputs, tmp_path / "full", *args, runtime(), augment=AUGMENT)

    def kill_after_2(epoch: int, record: dict[str, float]) -> None:
        if epoch == 2:
            raise Killed

    ckpt = tmp_path / "ck"
    with pytest.raises(Killed):
        pretrain(
            inputs,
            tmp_path / "out",
            *args,
            runtime(checkpoint_dir=ckpt, on_epoch_end=kill_after_2),
            augment=AUGMENT,
        )
    resumed = pretrain(
        inputs, tmp_path / "out", *args, runtime(checkpoint_dir=ckpt), augment=AUGMENT
    )
    assert resumed.resumed_at == 2
    assert resumed.history == full.history
    a = load_file(str(tmp_path / "full" / "encoder.safetensors"))
    b = load_file(str(tmp_path / "out" / "encoder.safetensors"))
    assert all(a[k].equal(b[k]) for k in a)


def test_validation_sees_the_same_views_every_pass(world) -> None:
    """Every validation pass draws the same views from its own generator and leaves torch's
    global generator (the training views') where it was."""
    from pipeline.losses import build_objective
    from pipeline.models import build_ecg_encoder
    from pipeline.train.data import EpochLoader
    from pipeline.train.pretrain import _val_loss
    from pipeline.train.two_view import TwoViewEmbedding

    torch.manual_seed(0)
    encoder = build_ecg_encoder(model_cfg()["ecg_encoder"])
    model = TwoViewEmbedding(encoder, 16, 32, AUGMENT, build_objective("barlow_twins")).eval()
    ds = ECGDataset(
        open_store(world.shard_index), read_ids(world.ids["val"]), crop_samples=50, second_crop=True
    )
    loader = EpochLoader(ds, 8, shuffle=False, drop_last=False)
    state = torch.get_rng_state()
    with torch.no_grad():
        first = _val_loss(model, loader, torch.device("cpu"), seed=1)
        again = _val_loss(model, loader, torch.device("cpu"), seed=1)
        other = _val_loss(model, loader, torch.device("cpu"), seed=2)
        assert torch.equal(torch.get_rng_state(), state)
        batch = next(iter(loader))
        fresh = [model.loss(batch).loss.item() for _ in range(2)]  # global generator
    assert first == again and first != other
    assert fresh[0] != fresh[1]


def test_augmentation_matters(world, tmp_path: Path) -> None:
    """Without augmentation the two crops of a record are still different windows, so the
    loss is finite and learning happens; with augmentation the stage sees other inputs."""
    args = (pretrain_cfg(epochs=1), model_cfg(), runtime())
    off = EcgAugmentConfig(
        scale_range=(1.0, 1.0), noise_std=0.0, lead_mask_prob=0.0, time_mask_fraction=0.0
    )
    plain = pretrain(_ecg_only_inputs(world), tmp_path / "plain", *args, augment=off)
    strong = pretrain(_ecg_only_inputs(world), tmp_path / "strong", *args, augment=AUGMENT)
    assert np.isfinite(plain.best_val_loss) and np.isfinite(strong.best_val_loss)
    assert plain.history[0]["loss"] != strong.history[0]["loss"]


def test_stage_two_on_the_ecg_only_encoder(world, stage1: Path, tmp_path: Path) -> None:
    cfg = stage_cfg(freeze_blocks=1, encoder_lr=1e-3)
    inputs = world.supervised_inputs("diagnoses", init_dir=stage1)
    result = train_supervised(
        "ssl_ecg_only",
        inputs,
        tmp_path / "m",
        tmp_path / "m.npz",
        cfg,
        model_cfg(),
        runtime(),
    )
    assert 0.0 <= result.test_auroc <= 1.0
    start = load_file(str(stage1 / "encoder.safetensors"))
    tuned = load_file(str(tmp_path / "m" / "model.safetensors"))
    # the first block is frozen: it leaves stage 2 exactly as stage 1 made it
    frozen = [k for k in start if k.startswith("blocks.0.")]
    assert frozen and all(tuned[f"encoder.{k}"].equal(start[k]) for k in frozen)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["spec"]["init"] == "pretrain_ecg_only"
