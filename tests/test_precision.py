"""``train.precision``: bf16 / fp16 autocast with float32 kernels and losses (CPU).

bfloat16 autocast runs on CPU, so every claim is checked here without a GPU: one step in
bf16 agrees with fp32 within bf16's resolution, the S4 kernel, FFT convolution and loss
statistics stay float32 under autocast, a short bf16 run reaches fp32's validation AUROC,
fp16's loss scaler survives a resume, and ``auto`` / bad values resolve as documented.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from train_fixtures import CROP, build_world, model_cfg, runtime, stage_cfg, train_cfg

from pipeline.data.tabular import tabular_inputs
from pipeline.losses import BarlowTwinsLoss, ClipLoss, DistillationLoss, VICRegLoss, build_objective
from pipeline.losses.masked_bce import masked_bce
from pipeline.models import build_ecg_encoder, build_tabular_encoder
from pipeline.models.s4 import S4Layer
from pipeline.registry import spec
from pipeline.stops import BadSetting
from pipeline.tracking import TrackingConfig
from pipeline.train.data import (
    ECGDataset,
    EpochLoader,
    open_store,
    read_ids,
    read_names,
    read_targets,
)
from pipeline.train.engine import train_epoch
from pipeline.train.model import build_supervised
from pipeline.train.precision import Precision, resolve_precision
from pipeline.train.pretrain import EmbeddingTask, JointEmbedding
from pipeline.train.stage import StageRuntime
from pipeline.train.supervised import train_supervised
from pipeline.train.supervised_loss import supervised_loss

CPU = torch.device("cpu")
BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("precision"))


# ------------------------------------------------------------------ (e) resolving the setting


def test_auto_is_fp32_on_cpu_and_explicit_values_are_kept() -> None:
    assert resolve_precision("auto", CPU) == Precision("fp32", "cpu")
    assert resolve_precision("bf16", CPU) == Precision("bf16", "cpu")
    assert resolve_precision("fp16", CPU).new_scaler() is not None
    assert resolve_precision("bf16", CPU).new_scaler() is None  # bf16 has fp32's range


def test_an_unknown_precision_is_a_one_line_error_naming_the_key(world, tmp_path: Path) -> None:
    with pytest.raises(BadSetting, match=r"train.precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", CPU)
    with pytest.raises(BadSetting, match=r"train.precision .*'half'"):  # through a stage
        train_supervised(
            "signal_only",
            world.supervised_inputs("diagnoses"),
            tmp_path / "m",
            tmp_path / "p.npz",
            stage_cfg(),
            model_cfg(),
            runtime(train_cfg(precision="half")),
        )
    assert not (tmp_path / "m").exists()


# ----------------------------------------------- (b) float32 regions under autocast


def test_s4_kernel_and_fft_convolution_stay_float32_under_autocast() -> None:
    torch.manual_seed(0)
    for mode in ("dplr", "diag"):
        layer = S4Layer(8, d_state=4, mode=mode)
        u = torch.randn(2, 30, 8).bfloat16()  # what a bf16 projection hands the layer
        want_k, want_y = layer.kernel(30), layer.convolve_lh(u.float())
        with BF16:
            k, y = layer.kernel(30), layer.convolve_lh(u)
            out = layer.forward_lh(u)
        assert k.dtype == y.dtype == torch.float32, mode
        # the same float32 computation, not merely a float32 result
        assert torch.equal(k, want_k) and torch.equal(y, want_y), mode
        assert out.dtype == torch.bfloat16  # the GLU's projection does run in bf16


@pytest.mark.parametrize(
    "loss",
    [BarlowTwinsLoss(), VICRegLoss(), ClipLoss()],
    ids=["barlow_twins", "vicreg", "clip"],
)
def test_loss_statistics_stay_float32_under_autocast(loss: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    za, zb = (
        torch.randn(32, 16, generator=g).bfloat16(),
        torch.randn(32, 16, generator=g).bfloat16(),
    )
    want = loss(za.float(), zb.float())
    with BF16:
        got = loss(za, zb)
    for name, a, b in zip(got._fields, got, want, strict=True):
        assert a.dtype == torch.float32, name
        assert torch.equal(a, b), name  # bf16 matmuls (C, covariances, logits) would differ


def test_bce_losses_stay_float32_under_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(16, 5, generator=g)).bfloat16()
    target = (torch.rand(16, 5, generator=g) > 0.5).float()
    target[0, 0] = float("nan")
    teacher = torch.randn(16, 5, generator=g).bfloat16()
    distill = DistillationLoss(2.0, 0.5)
    want = masked_bce(logits.float(), target), distill(logits.float(), target, teacher.float())
    with BF16:
        got = masked_bce(logits, target), distill(logits, target, teacher)
    assert got[0].dtype == torch.float32 and torch.equal(got[0], want[0])
    for a, b in zip(got[1], want[1], strict=True):  # loss, hard and soft terms
        assert a.dtype == torch.float32 and torch.equal(a, b)


# ------------------------------------------------------ (a) one step, bf16 against fp32

StepFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


def _one_step(model: nn.Module, loader: EpochLoader, step_fn: StepFn, name: str):
    """The loss and the weight update of one training step (the engine's) in ``name``.

    SGD, not the stages' AdamW: AdamW's first update is lr * g / |g| per weight, so a
    gradient near zero (e.g. a bias in front of a batch norm) flips sign on rounding noise
    and the update says nothing about how close the gradients are; SGD's update is lr * g.
    """
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    torch.manual_seed(1)  # the same dropout masks in both precisions
    p = Precision(name, "cpu")
    out = train_epoch(m, opt, loader, step_fn, CPU, name, precision=p, scaler=p.new_scaler())
    before = dict(model.named_parameters())
    update = torch.cat([(w - before[n]).detach().flatten() for n, w in m.named_parameters()])
    return out["loss"], update


def _assert_step_agrees(model: nn.Module, loader: EpochLoader, step_fn: StepFn, tol: float):
    assert len(loader) == 1
    loss32, upd32 = _one_step(model, loader, step_fn, "fp32")
    loss16, upd16 = _one_step(model, loader, step_fn, "bf16")
    assert loss16 != loss32  # autocast did run in bf16
    # bf16 keeps 8 significant bits (rounding 2^-9 = 0.2 % per product): measured 0.38 %
    # (Barlow Twins) and 0.04 % (BCE); 2 % leaves room for other CPUs' kernels.
    assert abs(loss16 - loss32) <= 0.02 * abs(loss32)
    # The update (= gradient) of all weights: measured relative error 0.16 (Barlow Twins:
    # gradients through the batch standardisation are differences of similar terms) and
    # 0.07 (BCE), cosine 0.988 / 0.997. A float16 forward or a bf16 loss would not matter
    # here; a broken autocast (wrong casts, stale kernels) gives errors of order 1.
    rel = ((upd16 - upd32).norm() / upd32.norm()).item()
    cos = torch.nn.functional.cosine_similarity(upd16, upd32, dim=0).item()
    assert rel <= tol and cos >= 0.95, (rel, cos)


def test_one_barlow_twins_step_in_bf16_agrees_with_fp32(world) -> None:
    store = open_store(world.shard_index)
    ids = {p: read_ids(world.ids[p])[:32] for p in ("train", "val")}
    prep, tab = tabular_inputs(world.features, world.feature_manifest, "all", ids)
    torch.manual_seed(0)
    cfg = model_cfg()
    ecg = build_ecg_encoder(cfg["ecg_encoder"])
    tabular = build_tabular_encoder(
        cfg["tabular_encoder"], prep.n_continuous, prep.cat_cardinalities
    )
    model = JointEmbedding(ecg, tabular, 16, 32, build_objective("barlow_twins"))
    ds = ECGDataset(store, ids["train"], crop_samples=CROP, seed=0, tabular=tab["train"])
    loader = EpochLoader(ds, 32, shuffle=False, drop_last=True)
    task = EmbeddingTask(loader, CPU, 1)
    _assert_step_agrees(model, loader, task.loss, tol=0.3)


def test_one_supervised_step_in_bf16_agrees_with_fp32(world) -> None:
    store = open_store(world.shard_index)
    train_ids = read_ids(world.ids["train"])[:32]
    names = read_names(world.label_manifest, "code")
    targets = read_targets(world.labels, train_ids, names)
    torch.manual_seed(0)
    cfg = stage_cfg()
    model = build_supervised(spec("signal_only"), cfg, model_cfg(), len(names), None, None)
    ds = ECGDataset(store, train_ids, crop_samples=CROP, seed=0, targets=targets)
    loader = EpochLoader(ds, 32, shuffle=False, drop_last=True)
    _assert_step_agrees(model, loader, supervised_loss(model.encoder, cfg), tol=0.15)


# ------------------------------------------------- (c) a short run converges alike


def test_a_short_bf16_run_reaches_fp32_validation_auroc(world, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = {}
    for name in ("fp32", "bf16"):
        tracked = TrackingConfig(uri, "precision", str(tmp_path / name / "results"))
        results[name] = train_supervised(
            "signal_only",
            world.supervised_inputs("diagnoses"),
            tmp_path / name / "model",
            tmp_path / f"{name}.npz",
            stage_cfg(epochs=4),
            model_cfg(),
            StageRuntime(train_cfg(precision=name), tracked),
        )
        meta = json.loads((tmp_path / name / "model" / "model.json").read_text())
        assert meta["runtime"]["precision"] == name
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("precision").experiment_id
    logged = {
        r.data.params["train.precision"]: r.data.params["precision"]
        for r in client.search_runs([experiment], "attributes.run_name = 'signal_only'")
    }
    assert logged == {"fp32": "fp32", "bf16": "bf16"}  # as set, as resolved
    fp32, bf16 = results["fp32"].best_val_auroc, results["bf16"].best_val_auroc
    assert fp32 > 0.7  # the tiny world's signal is learnt at all
    # Measured 0.807 (fp32) and 0.805 (bf16). 24 validation records: one positive-negative
    # pair changing order moves a label's AUROC by 1 / (n_pos n_neg) ~ 0.01, so 0.05 allows
    # a few records to change rank and no more.
    assert abs(bf16 - fp32) <= 0.05, (fp32, bf16)


# ------------------------------------------------------------- (d) fp16 scaler on resume


def test_fp16_resume_restores_the_loss_scaler(world, tmp_path: Path) -> None:
    """The epoch-2 checkpoint of a run killed after epoch 1 and resumed equals that of a run
    never killed: loss scale and steps since the last overflow (a fresh scaler counts from
    0 again, and would double its scale at another step), weights and optimizer alike."""

    class Killed(Exception):
        pass

    def run(name: str, kill_after: int) -> dict:
        def kill(epoch: int, record: dict[str, float]) -> None:
            if epoch == kill_after:
                raise Killed

        with pytest.raises(Killed):
            train_supervised(
                "signal_only",
                world.supervised_inputs("diagnoses"),
                tmp_path / name,
                tmp_path / f"{name}.npz",
                stage_cfg(epochs=3),
                model_cfg(),
                runtime(
                    train_cfg(precision="fp16"), checkpoint_dir=tmp_path / name, on_epoch_end=kill
                ),
            )
        return torch.load(tmp_path / name / "last.pt", weights_only=False)

    straight = run("straight", kill_after=2)
    assert run("resumed", kill_after=1)["scaler"]["_growth_tracker"] == 4  # 64 records / 16
    resumed = run("resumed", kill_after=2)
    assert straight["epoch"] == resumed["epoch"] == 2
    assert straight["scaler"] == resumed["scaler"]
    assert resumed["scaler"]["_growth_tracker"] == 8
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
