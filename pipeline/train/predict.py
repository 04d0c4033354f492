"""Crop-averaged probabilities, macro AUROC for model selection, and the predictions file.

Validation and test follow Strodthoff et al. (2024): the record is cut into non-overlapping
2.5 s crops, each crop goes through the model, and the sigmoid outputs are averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.io import atomic_path
from pipeline.metrics import auroc_per_label
from pipeline.train.data import Batch, EpochLoader, to_device

# (model, batch with ecg (B', 12, C) and per-crop tabular rows) -> logits (B', K)
ForwardFn = Callable[[nn.Module, Batch], torch.Tensor]
TASKS = ("diagnoses", "labs")


def flatten_crops(batch: Batch) -> tuple[Batch, int]:
    """(B, K, 12, C) crops -> (B*K, 12, C), other inputs repeated per crop; returns K."""
    ecg = batch["ecg"]  # (B, K, 12, C)
    b, k = ecg.shape[:2]
    flat = {"ecg": ecg.reshape(b * k, *ecg.shape[2:])}  # (B*K, 12, C)
    for name, value in batch.items():
        if name not in ("ecg", "target"):
            flat[name] = value.repeat_interleave(k, dim=0)  # (B*K, ...)
    return flat, k


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    loader: EpochLoader,
    forward: ForwardFn,
    device: torch.device,
    sigmoid: bool = True,
) -> np.ndarray:
    """Outputs averaged over each record's eval crops, (N, K) float32 in id order.

    With ``sigmoid`` the per-crop outputs are probabilities (the contract's ``prob``);
    without, raw outputs are averaged (embeddings for the linear probe).
    """
    was_training = model.training
    model.eval()
    out = []
    for batch in loader:
        flat, k = flatten_crops(to_device(batch, device))
        prob = forward(model, flat).float()  # (B*K, n_out)
        prob = torch.sigmoid(prob) if sigmoid else prob
        out.append(prob.reshape(-1, k, prob.shape[-1]).mean(dim=1).cpu().numpy())  # (B, n_out)
    model.train(was_training)
    return np.concatenate(out).astype(np.float32)


def macro_auroc(target: np.ndarray, prob: np.ndarray) -> tuple[float, int]:
    """Mean per-label ROC AUC over observed entries; labels lacking a class are skipped.

    Uses the evaluation stage's AUROC, so model selection and Table 1 score the same way.

    Args:
        target: (N, K) with 0/1 and NaN for missing.
        prob: (N, K) scores.

    Returns:
        (macro AUROC or NaN when no label qualifies, number of labels used).
    """
    per_label = auroc_per_label(target.astype(np.float64), prob.astype(np.float64))  # (K,)
    used = ~np.isnan(per_label)
    return (float(per_label[used].mean()) if used.any() else float("nan")), int(used.sum())


def write_predictions(
    path: str | Path,
    study_id: np.ndarray,
    prob: np.ndarray,
    target: np.ndarray,
    labels: list[str],
    task: str,
) -> None:
    """Write the predictions npz of the contract (study_id, prob, target, labels, task)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    n, k = len(study_id), len(labels)
    if prob.shape != (n, k) or target.shape != (n, k):
        raise ValueError(f"prob {prob.shape} / target {target.shape} do not match ({n}, {k})")
    with atomic_path(path, suffix=".npz") as tmp, tmp.open("wb") as fh:
        np.savez(
            fh,
            study_id=np.asarray(study_id, dtype=np.int64),
            prob=np.asarray(prob, dtype=np.float32),
            target=np.asarray(target, dtype=np.float32),
            labels=np.asarray(labels, dtype=np.str_),
            task=np.asarray(task, dtype=np.str_),
        )
