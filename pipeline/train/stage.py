"""One stage template: what pre-training and every supervised stage do around their model.

A training stage states only what is its own: its model, its :class:`StageTask` (the
loss of one batch and the validation metric that selects the best epoch) and what it
writes. Everything else is here once, in the order every stage runs it:

0. :class:`StageRuntime`: how and where the stage runs (the ``train`` and ``mlflow``
   sections, the job's threads and resume directory), apart from what it trains;
1. :func:`open_stage`: threads, seeding, device and precision, the record store, the id
   files;
2. :func:`tracked_stage`: the resume checkpoint (keyed by the stage's params and input
   files) and the MLflow child run; the checkpoint is deleted once the body has written
   the stage's outputs;
3. :func:`fit_stage`: :func:`pipeline.train.engine.fit` on the task's loss and validation;
4. :func:`write_stage_dir`: weights, model.json, history.tsv (and JSON extras), atomically.

:class:`LoopSettings` is the training part of every stage's config section (pre-training's
and each supervised model's), written once and inherited by both config dataclasses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from pipeline.io import atomic_path, umask_mode
from pipeline.parallel import is_main
from pipeline.tracking import StageRun, TrackingConfig, stage_run
from pipeline.train.checkpoint import CheckpointSpec, stage_checkpoint
from pipeline.train.data import Batch, EpochLoader, RecordStore, open_store, read_ids
from pipeline.train.engine import (
    EpochCallback,
    FitResult,
    LoopConfig,
    MetricSink,
    TrainConfig,
    fit,
)
from pipeline.train.precision import FP32, Precision, resolve_precision
from pipeline.train.runtime import setup_runtime


@dataclass(frozen=True)
class LoopSettings:
    """The training settings of every stage's section (``pretrain`` and the supervised ones).

    Attributes:
        seed: seeds weights, data order and crops.
        epochs: the epoch cap; patience: early stop after this many epochs without a
            better validation metric (0: train to the cap).
        schedule, warmup_epochs: per-step learning-rate schedule (cosine, onecycle or
            constant) after a linear warm-up of this many epochs
            (:mod:`pipeline.train.schedule`).
        batch_size, lr, weight_decay: AdamW training.
    """

    seed: int = 0
    epochs: int = 15
    patience: int = 5
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-3

    def loop(self, validate_start: bool = False) -> LoopConfig:
        """The stage's loop (``validate_start``: the starting weights compete as epoch 0)."""
        return LoopConfig(
            self.epochs, self.schedule, self.warmup_epochs, self.patience, validate_start
        )


class StageTask(Protocol):
    """What a stage states of its own: the loss of a batch and its validation metric."""

    monitor: str  # the validation metric that selects the best epoch
    mode: Literal["min", "max"]

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss to minimise, extra terms to log) of one training batch."""
        ...

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics (the model in eval mode, no grad); must include ``monitor``."""
        ...


@dataclass(frozen=True)
class StageRuntime:
    """How and where a stage runs, apart from what it trains.

    Attributes:
        train: the ``train`` section; tracking: MLflow settings.
        checkpoint_dir: where the resume checkpoint lives (None: no resume).
        threads: the rule's threads (used unless ``train.num_threads`` is set).
        on_epoch_end: called with (epoch, record) after each epoch (tests simulate a kill).
    """

    train: TrainConfig
    tracking: TrackingConfig
    checkpoint_dir: Path | None = None
    threads: int | None = None
    on_epoch_end: EpochCallback | None = None


@dataclass(frozen=True)
class StageData:
    """What every stage opens before it builds its model."""

    device: torch.device
    store: RecordStore
    ids: dict[str, np.ndarray]  # part (train, val, test) -> study ids
    precision: Precision = FP32  # train.precision resolved on ``device``


def open_stage(
    runtime: StageRuntime, seed: int, shard_index: Path, id_files: Mapping[str, Path]
) -> StageData:
    """Threads, seeding and device first (so that model init draws from the seeded
    generator), the precision on that device, then the record store and each part's ids."""
    device = setup_runtime(runtime.train, runtime.threads, seed)
    precision = resolve_precision(runtime.train.precision, device)
    store = open_store(shard_index)
    ids = {part: read_ids(path) for part, path in id_files.items()}
    return StageData(device, store, ids, precision)


@contextmanager
def tracked_stage(
    name: str, params: Mapping[str, Any], files: Sequence[Path], runtime: StageRuntime
) -> Iterator[tuple[CheckpointSpec | None, StageRun]]:
    """The stage's resume checkpoint and MLflow child run ``name`` (logging ``params``).

    The checkpoint is keyed by ``{"stage": name, **params}`` and the identities of
    ``files``; it is deleted after the body returns (the outputs are written by then), and
    kept when the body raises, so that a rerun resumes.
    """
    config = {"stage": name, **params}
    ckpt = stage_checkpoint(runtime.checkpoint_dir, config, files, runtime.train)
    if not is_main():  # a data-parallel rank > 0: rank 0 records the run and clears
        yield ckpt, StageRun()
        return
    tracking = runtime.tracking
    results_dir = Path(tracking.results_dir)
    with stage_run(tracking.tracking_uri, tracking.experiment, results_dir, name, params) as run:
        yield ckpt, run
    if ckpt is not None:
        ckpt.clear()


def fit_stage(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: EpochLoader,
    task: StageTask,
    loop: LoopConfig,
    device: torch.device,
    *,
    checkpoint: CheckpointSpec | None = None,
    run: MetricSink | None = None,
    desc: str,
    on_epoch_end: EpochCallback | None = None,
    on_fresh_start: Callable[[], None] | None = None,
    precision: Precision = FP32,
) -> FitResult:
    """:func:`pipeline.train.engine.fit` on ``task``'s loss, validation and monitor."""
    return fit(
        model,
        optimizer,
        train_loader,
        task.loss,
        task.validate,
        loop=loop,
        monitor=task.monitor,
        mode=task.mode,
        device=device,
        checkpoint=checkpoint,
        run=run,
        desc=desc,
        on_epoch_end=on_epoch_end,
        on_fresh_start=on_fresh_start,
        precision=precision,
    )


def write_stage_dir(
    out_dir: Path,
    weights: Mapping[str, nn.Module],
    meta: Mapping[str, Any],
    history: list[dict[str, float]],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """A stage's directory, written atomically: each ``weights`` file (safetensors),
    model.json (``meta``), history.tsv and each ``extra`` JSON file."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for filename, module in weights.items():
            save_weights(tmp / filename, module)
        (tmp / "model.json").write_text(json.dumps(meta, indent=2))
        write_history(tmp / "history.tsv", history)
        for filename, value in (extra or {}).items():
            (tmp / filename).write_text(json.dumps(value, indent=2))


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    """Per-epoch metrics as a TSV (one row per epoch, columns in first-seen order)."""
    columns: list[str] = []
    for rec in history:
        columns += [k for k in rec if k not in columns]
    lines = ["\t".join(columns)]
    for rec in history:
        cells = [rec.get(c, float("nan")) for c in columns]
        lines.append(
            "\t".join(
                str(int(v)) if c == "epoch" else f"{v:.6g}"
                for c, v in zip(columns, cells, strict=True)
            )
        )
    path.write_text("\n".join(lines) + "\n")


def save_weights(path: Path, module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> None:
    """A state dict as safetensors (CPU, contiguous: safetensors refuses shared storage)."""
    state = (
        module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    )
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(path))
    os.chmod(path, umask_mode())  # safetensors writes 0600: colleagues could not read it
