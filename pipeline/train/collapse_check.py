"""Stage 1's collapse check: does a linear classifier still read diagnoses from the encoder?

A joint-embedding objective can be minimised by a collapsed encoder (constant or
low-rank embeddings). After pre-training, the logistic-regression reference
(:func:`pipeline.train.logistic_reference.logistic_reference`) is fitted on frozen,
crop-averaged ECG embeddings of (a seeded subset of) the training records and scored by
macro AUROC on the validation records; a collapsed encoder scores about 0.5. Written to
the pretrain directory's ``probe.json`` (its name kept for existing runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.train.data import RecordStore, read_names, read_targets
from pipeline.train.embed import embed_records
from pipeline.train.engine import TrainConfig
from pipeline.train.logistic_reference import logistic_reference


def collapse_check(
    encoder: nn.Module,
    store: RecordStore,
    labels: Path,
    label_manifest: Path,
    ids: dict[str, np.ndarray],
    *,
    seed: int,
    max_train: int,
    batch_size: int,
    train_cfg: TrainConfig,
    device: torch.device,
) -> dict[str, Any]:
    """Macro AUROC of the logistic reference on ``encoder``'s frozen embeddings.

    Args:
        labels, label_manifest: the diagnosis labels and their codes (column ``code``).
        ids: ``train`` and ``val`` study ids; at most ``max_train`` training records
            (drawn with ``seed``) are embedded, which bounds the check's cost.
    """
    rng = np.random.default_rng(seed)
    n_fit = min(max_train, len(ids["train"]))
    fit_ids = np.sort(rng.permutation(ids["train"])[:n_fit])
    codes = read_names(label_manifest, "code")
    y_fit = read_targets(labels, fit_ids, codes)
    y_val = read_targets(labels, ids["val"], codes)
    crop, k = train_cfg.crop_samples, train_cfg.eval_crops
    x_fit = embed_records(
        encoder, store, fit_ids, crop, k, batch_size=batch_size, device=device, desc="probe embed"
    )
    x_val = embed_records(
        encoder,
        store,
        ids["val"],
        crop,
        k,
        batch_size=batch_size,
        device=device,
        desc="probe embed",
    )
    ref = logistic_reference(x_fit, y_fit, x_val, y_val)
    n_used = int(ref["n_labels"])
    return {
        "macro_auroc": ref["val_auroc"],
        "n_labels": n_used,
        "n_labels_skipped": len(codes) - n_used,
        "n_fit": int(n_fit),
        "n_val": len(ids["val"]),
        "embedding_dim": int(x_fit.shape[1]),
    }
