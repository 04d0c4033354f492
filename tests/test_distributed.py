"""Data-parallel training (``train.devices``) on CPU with gloo: 2 processes with half the
batch each train what 1 process with the whole batch trains, and resume after a kill.

Dropout is off (each process draws its own masks); everything else is the stage as it runs.
Tolerance: the gathered statistics and the averaged gradients add the same terms in another
order, so the training losses agree to float32 rounding (relative 1e-5) and the weights to
1e-4. Not compared: parameters the loss does not depend on in exact arithmetic (a bias, or
the weight column of an input that is constant within the batch, in front of a batch norm,
which removes any shift): their gradient is rounding noise, which AdamW's normalised step
turns into moves of up to the learning rate in either run; and the batch norms' running
means that follow them, hence the looser tolerance on predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import build_world, model_cfg, pretrain_cfg, runtime, stage_cfg, train_cfg

from pipeline.losses import OBJECTIVE_NAMES, build_objective
from pipeline.parallel import current
from pipeline.stops import BadSetting
from pipeline.train.distributed import device_kind, launch
from pipeline.train.pretrain import pretrain
from pipeline.train.supervised import train_supervised

LOSS_RTOL, WEIGHT_ATOL, PROB_ATOL = 1e-5, 1e-4, 5e-3
# the last S4 block's output norm bias: the projector's or head's batch norm removes it
NULL_SPACE = ("blocks.1.norm.bias",)


class Killed(Exception):
    """What the test's kill raises (rank 0 hands it to the parent)."""


class KillAfter:
    """An ``on_epoch_end`` that pickles (each rank process unpickles the stage's arguments)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, epoch: int, record: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise Killed(f"killed after epoch {epoch}")


def _no_dropout() -> dict[str, Any]:
    cfg = model_cfg()
    return {name: {**section, "dropout": 0.0} for name, section in cfg.items()}


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in load_file(path).items()}


def _assert_close_weights(a: Path, b: Path, prefixes: tuple[str, ...] = ("",)) -> None:
    """The weights under ``prefixes`` agree, but for the NULL_SPACE and running statistics."""
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    keys = [
        k
        for k in wa
        if k.startswith(prefixes)
        and not k.endswith(NULL_SPACE)
        and "running_" not in k
        and "num_batches" not in k
    ]
    assert len(keys) > 10
    for key in keys:
        np.testing.assert_allclose(wa[key], wb[key], rtol=0, atol=WEIGHT_ATOL, err_msg=key)


def _losses(history: list[dict[str, float]]) -> list[float]:
    return [h["loss"] for h in history]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("ddp"), n_train=48, n_val=16, n_test=16)


def test_two_processes_pretrain_as_one_and_resume(world, tmp_path: Path) -> None:
    # Barlow Twins, global batch 16: one process, and two processes of 8 killed after
    # epoch 1 and resumed from rank 0's checkpoint (every rank loads it).
    args = (pretrain_cfg(epochs=2, batch_size=16), _no_dropout())
    inputs, ckpt = world.pretrain_inputs(), tmp_path / "ck"
    one = pretrain(inputs, tmp_path / "one", *args, runtime())
    ddp = train_cfg(devices=2)
    with pytest.raises(Killed):
        kill = KillAfter(1)
        pretrain(
            inputs, tmp_path / "two", *args, runtime(ddp, checkpoint_dir=ckpt, on_epoch_end=kill)
        )
    assert (ckpt / "last.pt").exists() and not (tmp_path / "two").exists()
    two = pretrain(inputs, tmp_path / "two", *args, runtime(ddp, checkpoint_dir=ckpt))
    assert two.resumed_at == 1
    assert not ckpt.exists()  # rank 0 cleared it once the outputs were written
    assert (tmp_path / "two/probe.json").exists()  # rank 0 finished the stage alone
    np.testing.assert_allclose(_losses(two.history), _losses(one.history), rtol=LOSS_RTOL)
    for term in ("on_diag", "off_diag"):  # the objective's terms, over the gathered batch
        ref = [h[term] for h in one.history]
        np.testing.assert_allclose([h[term] for h in two.history], ref, rtol=LOSS_RTOL)
    _assert_close_weights(
        tmp_path / "one/encoder.safetensors", tmp_path / "two/encoder.safetensors"
    )


def test_two_processes_fine_tune_as_one(world, tmp_path: Path) -> None:
    # A supervised stage (diagnoses: no missing target, so each half's mean BCE has the
    # same normaliser and DDP's average of the two is the whole batch's mean).
    inputs = world.supervised_inputs("diagnoses")
    args = (stage_cfg(epochs=2, batch_size=16), _no_dropout())
    results = {}
    for name, train in (("one", train_cfg()), ("two", train_cfg(devices=2))):
        results[name] = train_supervised(
            "multimodal_classification",
            inputs,
            tmp_path / name,
            tmp_path / f"{name}.npz",
            *args,
            runtime(train),
        )
    one, two = results["one"], results["two"]
    np.testing.assert_allclose(_losses(two.history), _losses(one.history), rtol=LOSS_RTOL)
    # the tabular encoder's first layers sit in front of batch norms (see the module doc)
    weights = [tmp_path / f"{name}/model.safetensors" for name in ("one", "two")]
    _assert_close_weights(*weights, prefixes=("encoder.", "head."))
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_allclose(b["prob"], a["prob"], rtol=0, atol=PROB_ATOL)


def _pairs(batch: int = 16, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(batch, dim, generator=g)
    return z_a, z_a + 0.5 * torch.randn(batch, dim, generator=g)


def _objective_on_rank(name: str) -> tuple[float, np.ndarray, np.ndarray]:
    """In a rank: the objective of this rank's half of the pairs, and its gradients divided
    by the ranks (the part DistributedDataParallel's average leaves to these rows)."""
    ranks = current()
    assert ranks is not None
    rows = slice(ranks.rank * 8, (ranks.rank + 1) * 8)
    z_a, z_b = (z[rows].clone().requires_grad_() for z in _pairs())
    out = build_objective(name)(z_a, z_b)  # type: ignore[arg-type]
    out.loss.backward()
    assert z_a.grad is not None and z_b.grad is not None
    return float(out.loss.detach()), z_a.grad.numpy() / ranks.world, z_b.grad.numpy() / ranks.world


def _objectives_on_rank() -> dict[str, tuple[float, np.ndarray, np.ndarray]]:
    return {name: _objective_on_rank(name) for name in OBJECTIVE_NAMES}


def test_objectives_see_the_global_batch() -> None:
    # Barlow Twins, VICReg and CLIP in 2 processes of 8 pairs: rank 0's loss and gradients
    # are those of the 16 pairs in one process (gradients: rank 0's rows).
    on_ranks = launch(_objectives_on_rank, (), {}, 2, "cpu")
    for name in OBJECTIVE_NAMES:
        z_a, z_b = (z.clone().requires_grad_() for z in _pairs())
        out = build_objective(name)(z_a, z_b)  # type: ignore[arg-type]
        out.loss.backward()
        assert z_a.grad is not None and z_b.grad is not None
        loss, g_a, g_b = on_ranks[name]
        assert loss == pytest.approx(float(out.loss.detach()), rel=1e-6), name
        np.testing.assert_allclose(g_a, z_a.grad[:8].numpy(), rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(g_b, z_b.grad[:8].numpy(), rtol=1e-5, atol=1e-7, err_msg=name)


def test_indivisible_batch_is_a_clear_error(world, tmp_path: Path) -> None:
    with pytest.raises(BadSetting, match=r"batch_size 15 does not split over train\.devices 2"):
        pretrain(
            world.pretrain_inputs(),
            tmp_path / "out",
            pretrain_cfg(batch_size=15),
            model_cfg(),
            runtime(train_cfg(devices=2)),
        )
    assert not (tmp_path / "out").exists()


def test_more_devices_than_gpus_is_a_clear_error() -> None:
    with pytest.raises(BadSetting, match=r"train\.devices is 4 but torch sees 2 CUDA device"):
        device_kind("cuda", 4, 2)
    with pytest.raises(BadSetting, match=r"train\.devices is 2 but torch sees 1 CUDA device"):
        device_kind("auto", 2, 1)
    assert device_kind("auto", 2, 0) == "cpu"  # no GPU: gloo processes on the CPU
    assert device_kind("cpu", 2, 8) == "cpu"
    assert device_kind("cuda", 2, 2) == "cuda"
