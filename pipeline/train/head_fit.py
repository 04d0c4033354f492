"""A head trained alone on cached frozen embeddings: the linear fit, the refit, frozen stages.

Linear-probe-then-fine-tune (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
Features"): a randomly initialised head, fine-tuned together with a pretrained encoder,
sends large, noisy gradients into the encoder before it has learned anything useful and
distorts the features. Fitting the head first on frozen embeddings (``head_init:
linear_fit``), then fine-tuning at a lower rate, keeps them. The same fit trains the whole
model when the encoder is frozen (``finetune_labs``), so no stage re-runs a frozen encoder
every epoch, and refits the head on the final encoder's embeddings (``head_refit``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from pipeline.losses.masked_bce import masked_bce
from pipeline.train.checkpoint import CheckpointSpec
from pipeline.train.data import Batch, EpochLoader
from pipeline.train.embed import CachedEmbeddings
from pipeline.train.engine import FitResult, LoopConfig, MetricSink
from pipeline.train.predict import macro_auroc
from pipeline.train.stage import fit_stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadFit:
    """How a head is trained on cached embeddings.

    Attributes:
        loop: epochs cap, schedule, warm-up, patience.
        lr, weight_decay: AdamW.
        batch_size: (record, crop) embeddings per step.
        seed: data order.
    """

    loop: LoopConfig
    lr: float
    weight_decay: float
    batch_size: int = 256
    seed: int = 0


class HeadTask:
    """A head on cached embeddings: masked BCE per batch, crop-averaged validation AUROC.

    Args:
        val_emb: (N, K, D) validation embeddings, on the head's device.
        val_targets: (N, T) 0/1 targets, NaN where missing.
    """

    monitor = "val_auroc"
    mode: Literal["min", "max"] = "max"

    def __init__(self, val_emb: torch.Tensor, val_targets: np.ndarray) -> None:
        self.val_emb = val_emb
        self.val_targets = val_targets

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return masked_bce(model(batch["emb"]), batch["target"]), {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        prob = torch.sigmoid(model(self.val_emb)).mean(dim=1).cpu().numpy()  # (N, T)
        auroc, n_used = macro_auroc(self.val_targets, prob)
        return {"val_auroc": auroc, "val_n_labels": float(n_used)}


def fit_head(
    head: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: HeadFit,
    device: torch.device,
    *,
    checkpoint: CheckpointSpec | None = None,
    run: MetricSink | None = None,
    desc: str = "head",
) -> FitResult:
    """Train ``head`` in place on cached crop embeddings; keeps the best validation epoch.

    Args:
        head: maps (..., D) embeddings to (..., T) logits (``model.make_head``).
        train, val: (embeddings (N, K, D), targets (N, T) with NaN = missing).
        cfg: loop and optimizer settings; device: where the head trains.
        checkpoint, run, desc: as in :func:`pipeline.train.engine.fit`.

    Returns:
        The loop's result; its monitor is ``val_auroc`` (crop-averaged probabilities).
    """
    loader = EpochLoader(
        CachedEmbeddings(*train, train=True),
        cfg.batch_size,
        shuffle=True,
        drop_last=True,  # a normalised head needs >= 2 rows; reshuffled, every crop is seen
        seed=cfg.seed,
    )
    val_emb = torch.from_numpy(np.ascontiguousarray(val[0], dtype=np.float32)).to(device)
    optimizer = torch.optim.AdamW(
        [p for p in head.parameters() if p.requires_grad],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    task = HeadTask(val_emb, val[1])
    return fit_stage(
        head, optimizer, loader, task, cfg.loop, device, checkpoint=checkpoint, run=run, desc=desc
    )


def refit_head(
    head: nn.Module,
    name: str,
    emb: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    fit_cfg: HeadFit,
    device: torch.device,
    result: FitResult,
    run: MetricSink,
) -> None:
    """Train ``head`` alone on the final embeddings; epoch 0 (the trained head) competes.

    ``name`` (the model's) labels the log lines. ``fit_cfg`` must validate its start, so
    the refit is kept only when it beats the head as trained end to end; ``result`` is
    updated in place (best metric, refit epochs).
    """
    refit = fit_head(
        head,
        (emb["train"], targets["train"]),
        (emb["val"], targets["val"]),
        fit_cfg,
        device,
        desc=f"{name} head refit",
    )
    start = refit.history[0]["val_auroc"]  # the trained head on the cached crops
    run.log_metrics({"head_refit_val_auroc": refit.best_metric}, result.epochs_run)
    if refit.best_epoch > 0:
        log.info(
            "%s: head refit on the final embeddings raises val macro AUROC %.4f -> %.4f",
            *(name, start, refit.best_metric),
        )
        result.best_metric = refit.best_metric
    result.head_refit_epochs = refit.best_epoch
