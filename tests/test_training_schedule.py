"""Training that converges: LR schedules, early stopping, cached embeddings, head warm start."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from train_fixtures import (
    build_world,
    model_cfg,
    pretrain_cfg,
    runtime,
    stage_cfg,
)

from pipeline.models import build_ecg_encoder
from pipeline.train.data import EpochLoader, open_store, read_ids
from pipeline.train.embed import CachedEmbeddings, embed_crops, embed_records
from pipeline.train.engine import LoopConfig, fit
from pipeline.train.model import build_supervised
from pipeline.train.pretrain import pretrain
from pipeline.train.schedule import WarmupAnneal
from pipeline.train.supervised import train_supervised


class Killed(Exception):
    """Stands in for SIGKILL after an epoch's checkpoint was written."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("schedule")
    w = build_world(root)
    pretrain(w.pretrain_inputs(), root / "pretrain", pretrain_cfg(epochs=2), *_shared())
    return w


def _shared() -> tuple:
    return model_cfg(), runtime()


def test_warmup_then_cosine_and_onecycle_shapes() -> None:
    cos = [WarmupAnneal("cosine", 10, 100)(s) for s in range(101)]
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(cos[:10]))  # warm-up rises
    assert all(a >= b for a, b in itertools.pairwise(cos[9:]))  # then anneals
    assert cos[55] == pytest.approx(0.5) and cos[100] == pytest.approx(0.0)
    one = [WarmupAnneal("onecycle", 30, 100)(s) for s in range(101)]
    assert one[0] > 1 / 25 and max(one) == pytest.approx(1.0) and one[100] == pytest.approx(1e-4)
    assert WarmupAnneal("constant", 0, 100)(77) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        WarmupAnneal("linear", 0, 10)


def test_early_stopping_keeps_the_best_epoch() -> None:
    """Validation peaks at epoch 2; patience 2 stops after epoch 4 with epoch 2's weights."""
    rng = np.random.default_rng(0)
    data = CachedEmbeddings(rng.normal(size=(32, 2, 4)), rng.integers(0, 2, (32, 1)), train=True)
    loader = EpochLoader(data, 8, shuffle=True, drop_last=False)
    head = nn.Linear(4, 1)
    scores = iter([0.6, 0.8, 0.7, 0.75, 0.9, 0.95])
    snapshots: list[torch.Tensor] = []

    def validate(m: nn.Module) -> dict[str, float]:
        snapshots.append(m.weight.detach().clone())
        return {"val_auroc": next(scores)}

    def step(m: nn.Module, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return nn.functional.binary_cross_entropy_with_logits(m(b["emb"]), b["target"]), {}

    opt = torch.optim.AdamW(head.parameters(), lr=0.1)
    loop = LoopConfig(6, "cosine", 1.0, patience=2)
    res = fit(head, opt, loader, step, validate, loop=loop, monitor="val_auroc", mode="max",
              device=torch.device("cpu"))  # fmt: skip
    assert (res.best_epoch, res.epochs_run, res.stopped_early) == (2, 4, True)
    assert [h["epoch"] for h in res.history] == [1.0, 2.0, 3.0, 4.0]
    assert head.weight.equal(snapshots[1])
    lrs = [h["lr"] for h in res.history]
    assert lrs[0] == pytest.approx(0.1) and lrs[1] < lrs[0]  # warmed up, then annealing


def test_embed_records_are_crop_averaged_encoder_outputs(world) -> None:
    meta = json.loads((world.root / "pretrain" / "model.json").read_text())
    enc = build_ecg_encoder(meta["ecg_encoder"])
    enc.load_state_dict(load_file(str(world.root / "pretrain" / "encoder.safetensors")))
    enc.eval()  # embeddings are taken without dropout
    store, ids = open_store(world.shard_index), read_ids(world.ids["val"])[:5]
    crops = embed_crops(enc, store, ids, 50, 4, batch_size=2)
    assert crops.shape == (5, 4, enc.out_dim)
    x = torch.from_numpy(store.get(int(ids[3])).astype(np.float32))  # (12, 200): 4 crops of 50
    with torch.no_grad():
        direct = enc(torch.stack([x[:, i * 50 : (i + 1) * 50] for i in range(4)])).numpy()
    np.testing.assert_allclose(crops[3], direct, rtol=1e-5, atol=1e-6)
    recs = embed_records(enc, store, ids, 50, 4)
    np.testing.assert_allclose(recs, crops.mean(axis=1), rtol=1e-6, atol=1e-7)


def _labs(world, root: Path, epochs: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Train method_labs (frozen encoder); returns how many encoder forward passes ran."""
    calls = 0

    def count(*_: object) -> None:
        nonlocal calls
        calls += 1

    def build(*args, **kw):  # the real builder; only a counting forward hook is added
        m = build_supervised(*args, **kw)
        m.encoder.register_forward_hook(count)
        return m

    with monkeypatch.context() as mp:
        mp.setattr("pipeline.train.supervised.build_supervised", build)
        train_supervised(
            "method_labs",
            world.supervised_inputs("labs", root / "diag"),
            root / f"labs{epochs}",
            root / f"labs{epochs}.npz",
            stage_cfg(epochs=epochs, freeze_encoder=True),
            *_shared(),
        )
    return calls


def test_frozen_encoder_stage_trains_on_cached_embeddings(
    world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_supervised(
        "method_diagnoses",
        world.supervised_inputs("diagnoses", world.root / "pretrain"),
        tmp_path / "diag",
        tmp_path / "diag.npz",
        stage_cfg(epochs=1, head_init="random"),
        *_shared(),
    )
    # Encoder passes: embedding train + val once, then the test predictions; head epochs
    # add none, so 2 and 12 epochs cost the same number of encoder calls.
    assert _labs(world, tmp_path, 2, monkeypatch) == _labs(world, tmp_path, 12, monkeypatch) > 0
    meta = json.loads((tmp_path / "labs12" / "model.json").read_text())
    assert meta["training"]["epochs_run"] > 2


def test_head_warm_start_is_epoch_zero_and_resume_is_bit_identical(world, tmp_path: Path) -> None:
    """LP-FT with a warm-up + cosine schedule and patience, killed after epoch 2, resumes."""
    cfg = stage_cfg(
        epochs=4, head_init="linear_fit", schedule="cosine", warmup_epochs=1, patience=3
    )
    inputs = world.supervised_inputs("diagnoses", world.root / "pretrain")

    def run(name: str, **kw) -> object:
        return train_supervised(
            "method_diagnoses", inputs, tmp_path / name, tmp_path / f"{name}.npz", cfg,
            model_cfg(), runtime(checkpoint_dir=tmp_path / f"ck_{name}", **kw),
        )  # fmt: skip

    full = run("full")
    assert full.history[0]["epoch"] == 0.0  # the warm-started head, validated before training
    assert full.history[0]["val_auroc"] > 0.6  # the probe head already ranks the ECG labels
    assert full.best_val_auroc >= full.history[0]["val_auroc"]

    def kill(epoch: int, record: dict[str, float]) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        run("out", on_epoch_end=kill)
    resumed = run("out")
    assert resumed.resumed_at == 2
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert all(a[k].equal(b[k]) for k in a)
    assert (tmp_path / "full" / "history.tsv").read_text() == (
        tmp_path / "out" / "history.tsv"
    ).read_text()
    meta = json.loads((tmp_path / "full" / "model.json").read_text())
    t = meta["training"]
    assert t["head_val_auroc"] == pytest.approx(full.best_val_auroc)
    assert 0.5 < t["probe_val_auroc"] <= 1.0
