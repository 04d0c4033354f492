"""The one training loop shared by pre-training and every supervised stage.

Stages differ only in the step function (a batch -> loss and metrics to log), the
validation function (the model -> metrics, one of which selects the best epoch) and the
optimizer's parameter groups. Everything else lives here once: epochs, the per-step
learning-rate schedule, progress bars, validation, early stopping, best-epoch selection,
resume checkpoints, MLflow logging.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.amp import GradScaler
from torch.optim.lr_scheduler import LRScheduler

from pipeline.data.checks import TooLittleData
from pipeline.logs import progress
from pipeline.parallel import current
from pipeline.train import distributed
from pipeline.train.checkpoint import CheckpointSpec, capture_rng, restore_rng
from pipeline.train.data import Batch, EpochLoader, to_device
from pipeline.train.interrupt import EpochTally, StepGuard
from pipeline.train.precision import FP32, Precision, backward_step
from pipeline.train.schedule import EarlyStopping, make_scheduler

log = logging.getLogger(__name__)

StepFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]
ValFn = Callable[[nn.Module], dict[str, float]]
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` config section (shared by every training stage).

    Attributes:
        device: "auto" (cuda when available), "cpu" or "cuda".
        num_threads: torch CPU threads; 0 = the rule's threads (torch's default outside rules).
        crop_samples: training crop length in samples (2.5 s at 100 Hz).
        eval_crops: non-overlapping crops averaged at validation and test.
        checkpoint_every: epochs between resume checkpoints.
        num_workers: DataLoader worker processes, or "auto" (0 on CPU, up to 4 on CUDA:
            :func:`pipeline.train.loader_options.loader_options`); the batches are the same for any.
        checkpoint_minutes: minutes between resume checkpoints within an epoch (0: none);
            see :mod:`pipeline.train.interrupt`.
        precision: auto, fp32, bf16 or fp16 (:mod:`pipeline.train.precision`).
        devices: data-parallel processes, one device each (:mod:`pipeline.train.distributed`).
    """

    device: str = "auto"
    num_threads: int = 0
    crop_samples: int = 250
    eval_crops: int = 4
    checkpoint_every: int = 1
    num_workers: int | str = "auto"
    checkpoint_minutes: float = 15.0
    precision: str = "auto"
    devices: int = 1


class MetricSink(Protocol):
    """What the loop needs from :class:`pipeline.tracking.StageRun`."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...


@dataclass
class FitResult:
    """History (one dict per epoch), the selected epoch (1-based) and its metric."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # 0: the starting weights (validate_start) were never beaten
    best_metric: float = float("nan")
    resumed_at: int = 0  # epochs restored from a checkpoint (0 = fresh run)
    epochs_run: int = 0
    stopped_early: bool = False
    head_refit_epochs: int = 0  # epochs of a later head-only refit that were kept (0: none)


def _improved(value: float, best: float | None, mode: Literal["min", "max"]) -> bool:
    if best is None:
        return True
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value < best if mode == "min" else value > best


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _lr_metrics(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    groups = optimizer.param_groups
    if len(groups) == 1:
        return {"lr": float(groups[0]["lr"])}
    return {f"lr_{g.get('name', i)}": float(g["lr"]) for i, g in enumerate(groups)}


def _batch_size(batch: Batch) -> int:
    return int(next(iter(batch.values())).shape[0])


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: EpochLoader,
    step_fn: StepFn,
    device: torch.device,
    desc: str,
    scheduler: LRScheduler | None = None,
    tally: EpochTally | None = None,
    on_step: Callable[[EpochTally], None] | None = None,
    precision: Precision = FP32,
    scaler: GradScaler | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns batch-size-weighted means of the step metrics.

    ``scheduler`` (if any) steps after every optimizer step. ``tally`` continues an epoch
    resumed mid-way (the loader then starts after its batches); ``on_step`` is called at
    every step boundary (:class:`~pipeline.train.interrupt.StepGuard`). The forward pass
    runs under ``precision``'s autocast; ``scaler`` scales the loss (fp16).
    """
    model.train()
    tally = EpochTally() if tally is None else tally
    for batch in progress(loader, desc=desc, total=len(loader), unit="batch"):
        batch = to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss, metrics = step_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: non-finite training loss")
        backward_step(loss, optimizer, scaler)
        if scheduler is not None:
            scheduler.step()
        logged = {"loss": float(loss.detach()), **metrics}
        tally.add(*distributed.global_tally(_batch_size(batch), logged))  # over every rank
        if on_step is not None:
            on_step(tally)
    if tally.seen == 0:
        raise TooLittleData(f"{desc}: no training batch (too few records for the batch size)")
    return tally.means()


@dataclass(frozen=True)
class LoopConfig:
    """How long and at what rate the loop trains (shared by every stage's section).

    Attributes:
        epochs: the epoch cap.
        schedule: "cosine", "onecycle" or "constant" (see :mod:`pipeline.train.schedule`).
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        patience: stop after this many epochs without a better ``monitor`` (0: never).
        validate_start: validate the starting weights as "epoch 0", a candidate for the
            best epoch (a warm-started head is kept if fine-tuning never beats it).
    """

    epochs: int
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    patience: int = 0
    validate_start: bool = False


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: EpochLoader,
    step_fn: StepFn,
    val_fn: ValFn,
    *,
    loop: LoopConfig,
    monitor: str,
    mode: Literal["min", "max"],
    device: torch.device,
    checkpoint: CheckpointSpec | None = None,
    run: MetricSink | None = None,
    desc: str = "train",
    on_epoch_end: EpochCallback | None = None,
    on_fresh_start: Callable[[], None] | None = None,
    precision: Precision = FP32,
) -> FitResult:
    """Train up to ``loop.epochs``, validate after each, keep the best weights by ``monitor``.

    The learning rate follows ``loop.schedule`` per step; training stops early after
    ``loop.patience`` epochs without improvement. The model ends with the best epoch's
    weights loaded. With ``checkpoint`` the loop resumes from a matching checkpoint
    (model, optimizer, scheduler, best weights, history, RNG) and writes one every
    ``checkpoint.every`` epochs and every ``checkpoint.minutes`` within an epoch; on SIGTERM
    or SIGINT it writes one at the next step and stops (:mod:`pipeline.train.interrupt`). The
    caller deletes it once the stage's outputs are written. In a data-parallel group every
    rank trains on its part of each batch, rank 0 alone validates and checkpoints, and the
    ranks > 0 leave when training ends (:mod:`pipeline.train.distributed`).

    Args:
        model: already on ``device``; the optimizer is built over its parameters.
        step_fn: (model, batch) -> (loss, extra metrics); the loop does backward/step.
        val_fn: model in eval mode under no_grad -> metrics, must include ``monitor``.
        monitor, mode: the validation metric selecting the best epoch and its direction.
        on_epoch_end: called with (epoch, record) after logging and checkpointing.
        on_fresh_start: called once before training when no checkpoint was restored (a
            head warm start: on resume its result is already in the checkpoint).
        precision: autocast of training and validation forward passes; fp16's loss scaler
            is checkpointed with the optimizer.
    """
    epochs, stopper = loop.epochs, EarlyStopping(loop.patience)
    scheduler = make_scheduler(
        optimizer, loop.schedule, loop.warmup_epochs, epochs, max(len(train_loader), 1)
    )
    state, scaler = _LoopState(FitResult()), precision.new_scaler()
    if (ranks := current()) is not None:
        train_loader.shard(ranks.rank, ranks.world)
    ckpt = checkpoint.load() if checkpoint is not None else None  # rank 0's, on every rank
    tally = EpochTally()
    if ckpt is not None:
        start, tally = state.restore(ckpt, model, optimizer, scheduler, scaler)
        log.info(
            "%s: resumed after epoch %d (and %d batches) of at most %d",
            *(desc, start, tally.batches, epochs),
        )
        if run is not None:
            for rec in state.result.history:
                run.log_metrics({k: v for k, v in rec.items() if k != "epoch"}, int(rec["epoch"]))
    else:
        start = 0
        if on_fresh_start is not None:
            distributed.on_main_alone(on_fresh_start)
        if loop.validate_start:
            val = distributed.from_main(partial(_validate, model, val_fn, monitor, precision))
            state.observe(model, 0, {}, val, optimizer, monitor, mode)
            _log_epoch(desc, 0, epochs, state, monitor, run)
    step = distributed.parallel_step(model, step_fn)  # every rank holds the start by now
    stopped = bool(state.result.history) and stopper.should_stop(
        int(state.result.history[-1]["epoch"]), state.result.best_epoch
    )

    def snapshot(epoch: int, tally: EpochTally | None = None) -> dict[str, Any]:
        # a mid-epoch checkpoint also carries the epoch's tally (batches done, metric sums)
        saved = state.checkpoint(model, optimizer, scheduler, scaler, epoch)
        return saved if tally is None else saved | {"tally": tally.to_dict()}

    with StepGuard(checkpoint, desc, snapshot) as guard:
        for epoch in range(start, epochs):
            if stopped:
                break
            n_batches = train_loader.set_epoch(epoch, start_batch=tally.batches)
            metrics = train_epoch(
                *(model, optimizer, train_loader, step, device),
                f"{desc} {epoch + 1}/{epochs}",
                scheduler,
                tally,
                partial(guard.after_step, epoch, n_batches=n_batches),
                *(precision, scaler),
            )
            tally = EpochTally()
            val = distributed.from_main(partial(_validate, model, val_fn, monitor, precision))
            state.observe(model, epoch + 1, metrics, val, optimizer, monitor, mode)
            _log_epoch(desc, epoch + 1, epochs, state, monitor, run)
            stopped = stopper.should_stop(epoch + 1, state.result.best_epoch)
            due = checkpoint is not None and (epoch + 1) % max(checkpoint.every, 1) == 0
            if checkpoint is not None and due and epoch + 1 < epochs and not stopped:
                checkpoint.save(snapshot(epoch + 1))
                guard.saved()
            guard.after_epoch(epoch + 1)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, state.result.history[-1])
    distributed.end_training()  # ranks > 0 leave here; rank 0 finishes the stage alone
    if stopped:
        log.info(
            "%s: early stop after epoch %d (no better %s for %d epochs; best epoch %d)",
            *(desc, int(state.result.history[-1]["epoch"]), monitor, loop.patience),
            state.result.best_epoch,
        )
    assert state.best_state is not None  # epochs >= 1 or validate_start
    model.load_state_dict(state.best_state)
    result = state.result
    result.best_metric = float("nan") if state.best is None else float(state.best)
    result.epochs_run = int(result.history[-1]["epoch"]) if result.history else 0
    result.stopped_early = stopped
    return result


def _validate(
    model: nn.Module, val_fn: ValFn, monitor: str, precision: Precision
) -> dict[str, float]:
    model.eval()
    with torch.no_grad(), precision.autocast():
        val = val_fn(model)
    if monitor not in val:
        raise KeyError(f"validation metrics lack the monitored {monitor!r}: {sorted(val)}")
    return val


def _log_epoch(
    desc: str, epoch: int, epochs: int, state: _LoopState, monitor: str, run: MetricSink | None
) -> None:
    record = state.result.history[-1]
    log.info(
        "%s epoch %d/%d: loss %.4f, %s %.4f (best epoch %d)",
        *(desc, epoch, epochs, record.get("loss", float("nan")), monitor, record[monitor]),
        state.result.best_epoch,
    )
    if run is not None:
        run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, epoch)


@dataclass
class _LoopState:
    """History, best weights and best metric: what a resume checkpoint must carry."""

    result: FitResult
    best: float | None = None
    best_state: dict[str, torch.Tensor] | None = None

    def observe(
        self,
        model: nn.Module,
        epoch: int,
        metrics: Mapping[str, float],
        val: Mapping[str, float],
        optimizer: torch.optim.Optimizer,
        monitor: str,
        mode: Literal["min", "max"],
    ) -> None:
        """Append the epoch's record; keep the weights if ``monitor`` improved."""
        self.result.history.append(
            {"epoch": float(epoch), **metrics, **_lr_metrics(optimizer), **val}
        )
        if _improved(val[monitor], self.best, mode):
            self.best, self.best_state = val[monitor], _clone_state(model)
            self.result.best_epoch = epoch

    def checkpoint(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: LRScheduler,
        scaler: GradScaler | None,
        epoch: int,
    ) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "best_metric": self.best,
            "best_state": self.best_state,
            "best_epoch": self.result.best_epoch,
            "history": self.result.history,
            "rng": capture_rng(),
            "scaler": None if scaler is None else scaler.state_dict(),  # fp16's loss scale
        }

    def restore(
        self,
        ckpt: Mapping[str, Any],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: LRScheduler,
        scaler: GradScaler | None,
    ) -> tuple[int, EpochTally]:
        """Load a checkpoint into the model, optimizer, scheduler and self; returns its epoch
        (completed epochs) and, for a mid-epoch checkpoint, the tally of the epoch after it."""
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
        self.best_state, self.best = ckpt["best_state"], ckpt["best_metric"]
        self.result.history = list(ckpt["history"])
        self.result.best_epoch, self.result.resumed_at = ckpt["best_epoch"], ckpt["epoch"]
        restore_rng(ckpt["rng"])
        return int(ckpt["epoch"]), EpochTally.from_dict(ckpt.get("tally"))
