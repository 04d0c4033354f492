"""Heads fitted on cached frozen embeddings, and the logistic-regression reference probe.

Linear-probe-then-fine-tune (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
Features"): a randomly initialised head, fine-tuned together with a pretrained encoder,
sends large, noisy gradients into the encoder before it has learned anything useful and
distorts the features. Fitting the head first on frozen embeddings, then fine-tuning at a
lower rate, keeps them. The same fit trains the whole model when the encoder is frozen
(``finetune_labs``), so no stage re-runs a frozen encoder every epoch.

:func:`logistic_probe` is the acceptance reference: a trained head should score at least
as well on validation as a scikit-learn logistic regression on the same frozen embedding.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from pipeline.train.checkpoint import CheckpointSpec
from pipeline.train.data import Batch, EpochLoader
from pipeline.train.embed import CachedEmbeddings
from pipeline.train.engine import FitResult, LoopConfig, MetricSink, fit
from pipeline.train.predict import macro_auroc

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


def fit_head(
    head: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: HeadFit,
    device: torch.device,
    *,
    loss_fn: LossFn,
    checkpoint: CheckpointSpec | None = None,
    run: MetricSink | None = None,
    desc: str = "head",
) -> FitResult:
    """Train ``head`` in place on cached crop embeddings; keeps the best validation epoch.

    Args:
        head: maps (..., D) embeddings to (..., T) logits (``model.make_head``).
        train, val: (embeddings (N, K, D), targets (N, T) with NaN = missing).
        cfg: loop and optimizer settings; loss_fn: (logits, targets) -> scalar loss.
        device: where the head trains.
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

    def step(m: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return loss_fn(m(batch["emb"]), batch["target"]), {}

    def validate(m: nn.Module) -> dict[str, float]:
        prob = torch.sigmoid(m(val_emb)).mean(dim=1).cpu().numpy()  # (N, T), crop-averaged
        auroc, n_used = macro_auroc(val[1], prob)
        return {"val_auroc": auroc, "val_n_labels": float(n_used)}

    return fit(
        head,
        optimizer,
        loader,
        step,
        validate,
        loop=cfg.loop,
        monitor="val_auroc",
        mode="max",
        device=device,
        checkpoint=checkpoint,
        run=run,
        desc=desc,
    )


def logistic_probe(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, float]:
    """One-vs-rest logistic regression on standardised embeddings, scored on ``x_val``.

    Labels lacking a class among the observed (non-NaN) fit or validation targets are
    skipped. A collapsed encoder (constant embeddings) scores about 0.5.

    Args:
        x_fit, x_val: (N, D) embeddings (crop-averaged).
        y_fit, y_val: (N, T) 0/1 targets, NaN where missing.

    Returns:
        ``val_auroc`` (macro over usable labels), ``n_labels`` and ``n_labels_skipped``.
    """
    scaler = StandardScaler().fit(x_fit)
    a, b = scaler.transform(x_fit), scaler.transform(x_val)
    prob = np.full(y_val.shape, np.nan, dtype=np.float64)
    for j in range(y_fit.shape[1]):
        seen_fit, seen_val = ~np.isnan(y_fit[:, j]), ~np.isnan(y_val[:, j])
        yf, yv = y_fit[seen_fit, j], y_val[seen_val, j]
        if len(np.unique(yf)) < 2 or len(np.unique(yv)) < 2:
            continue
        clf = LogisticRegression(C=c, max_iter=max_iter)
        # One BLAS thread: on small problems extra threads only spin (5x slower on 2 cores).
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)  # lbfgs may stop at max_iter
            clf.fit(a[seen_fit], yf)
        prob[:, j] = clf.predict_proba(b)[:, 1]
    usable = ~np.isnan(prob).all(axis=0) if len(prob) else np.zeros(0, dtype=bool)
    auroc, n_used = macro_auroc(y_val[:, usable], prob[:, usable])
    return {
        "val_auroc": auroc,
        "n_labels": float(n_used),
        "n_labels_skipped": float(y_fit.shape[1] - n_used),
    }


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over observed entries; NaN targets contribute nothing.

    Args:
        logits: (B, K) pre-sigmoid outputs.
        target: (B, K) with 0/1 and NaN where the target is missing.
    """
    observed = ~torch.isnan(target)  # (B, K)
    safe = torch.where(observed, target, torch.zeros_like(target))
    loss = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")  # (B, K)
    loss = torch.where(observed, loss, torch.zeros_like(loss))
    return loss.sum() / observed.sum().clamp(min=1)


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
        loss_fn=masked_bce,
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


def training_summary(
    result: FitResult, probe: Mapping[str, float], test_auroc: float
) -> dict[str, float]:
    """Scalars logged to MLflow and model.json: the head against its logistic probe."""
    return {
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(result.epochs_run),
        "stopped_early": float(result.stopped_early),
        "head_refit_epochs": float(result.head_refit_epochs),
        "head_val_auroc": result.best_metric,
        "probe_val_auroc": probe["val_auroc"],
        "probe_n_labels": probe["n_labels"],
        "head_minus_probe_val_auroc": result.best_metric - probe["val_auroc"],
        "test_auroc": test_auroc,
    }
