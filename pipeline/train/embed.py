"""Frozen embeddings computed once per record and eval crop, and a dataset over them.

A frozen encoder gives the same embedding of a crop in every epoch, so stages that train
only a head on it (``finetune_labs`` with a frozen encoder, the head warm start, linear
probes) run the encoder once over each record's ``eval_crops`` non-overlapping crops and
train on the cached (N, K, D) array: a head epoch then costs milliseconds instead of an
encoder pass. The crops are those of validation and test, so the 10 s record is covered.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from pipeline.data.tabular import TabularArrays
from pipeline.logs import progress
from pipeline.train.data import Batch, ECGDataset, EpochLoader, RecordStore, to_device
from pipeline.train.predict import flatten_crops

# (module, batch with ecg (B', 12, C) and per-crop tabular rows) -> embeddings (B', D)
EmbedFn = Callable[[nn.Module, Batch], torch.Tensor]


def _ecg_only(encoder: nn.Module, batch: Batch) -> torch.Tensor:
    return encoder(batch["ecg"])


@torch.no_grad()
def embed_crops(
    encoder: nn.Module,
    store: RecordStore,
    ids: np.ndarray,
    crop_samples: int,
    eval_crops: int,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    tabular: TabularArrays | None = None,
    forward: EmbedFn | None = None,
    desc: str = "embed",
) -> np.ndarray:
    """Embeddings of every eval crop of every record, (N, eval_crops, D) float32 in id order.

    Args:
        encoder: an ECG encoder ((B, 12, C) -> (B, D)) or, with ``forward``, any module.
        store: the shard store (``pipeline.data.ecg_store.ShardStore``).
        ids: study_id values, int64.
        crop_samples, eval_crops: the ``train`` section's crop length and crop count.
        batch_size: records per forward pass (each brings ``eval_crops`` crops).
        device: where the encoder runs (it must already be there).
        tabular: per-record tabular inputs, repeated per crop (multimodal models).
        forward: (module, flattened batch) -> (B', D); default ``encoder(batch["ecg"])``.
        desc: progress-bar label.
    """
    fn = forward or _ecg_only
    ds = ECGDataset(
        store, ids, crop_samples=crop_samples, mode="eval", eval_crops=eval_crops, tabular=tabular
    )
    loader = EpochLoader(ds, batch_size, shuffle=False, drop_last=False)
    was_training = encoder.training
    encoder.eval()  # no dropout: the same crop always gives the same embedding
    out = []
    dev = torch.device(device)
    for batch in progress(loader, desc=desc, total=len(loader), unit="batch"):
        flat, k = flatten_crops(to_device(batch, dev))
        h = fn(encoder, flat).float()  # (B*K, D)
        out.append(h.reshape(-1, k, h.shape[-1]).cpu().numpy())  # (B, K, D)
    encoder.train(was_training)
    if not out:
        raise ValueError(f"{desc}: no records to embed")
    return np.concatenate(out).astype(np.float32)


def embed_records(
    encoder: nn.Module,
    store: RecordStore,
    ids: np.ndarray,
    crop_samples: int,
    eval_crops: int,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    tabular: TabularArrays | None = None,
    forward: EmbedFn | None = None,
    desc: str = "embed",
) -> np.ndarray:
    """Crop-averaged embeddings, (N, D) float32 in id order (see :func:`embed_crops`)."""
    crops = embed_crops(
        encoder,
        store,
        ids,
        crop_samples,
        eval_crops,
        batch_size=batch_size,
        device=device,
        tabular=tabular,
        forward=forward,
        desc=desc,
    )
    return crops.mean(axis=1)


class CachedEmbeddings:
    """Cached crop embeddings with targets, as an :class:`EpochLoader` dataset.

    Train mode: one item per (record, crop), ``emb`` (D,); eval mode: one item per record,
    ``emb`` (K, D), so a head's sigmoid outputs can be averaged over crops exactly as in
    :func:`pipeline.train.predict.predict_probs`.
    """

    def __init__(self, emb: np.ndarray, targets: np.ndarray, *, train: bool) -> None:
        if emb.ndim != 3 or len(emb) != len(targets):
            raise ValueError(f"embeddings {emb.shape} do not match targets {targets.shape}")
        self.emb = np.ascontiguousarray(emb, dtype=np.float32)  # (N, K, D)
        self.targets = np.asarray(targets, dtype=np.float32)  # (N, T)
        self.train = train

    def set_epoch(self, epoch: int) -> None:
        """Nothing is drawn per epoch (the loader reshuffles)."""

    def __len__(self) -> int:
        n, k = self.emb.shape[:2]
        return n * k if self.train else n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.rows(np.array([i])).items()}

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Items ``index`` stacked: ``emb`` (B, D) or (B, K, D), ``target`` (B, T)."""
        if self.train:
            r, c = np.divmod(index, self.emb.shape[1])
            return {"emb": self.emb[r, c], "target": self.targets[r]}
        return {"emb": self.emb[index], "target": self.targets[index]}
