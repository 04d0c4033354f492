"""A supervised stage's records: the loaders and the embedding caches it reads them through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.data.tabular import TabularArrays
from pipeline.models.supervised import Batch, SupervisedModel
from pipeline.train.data import ECGDataset, EpochLoader, Mode
from pipeline.train.embed import embed_crops
from pipeline.train.engine import TrainConfig
from pipeline.train.loader_options import loader_options
from pipeline.train.stage import StageData
from pipeline.train.stage_config import StageConfig


@dataclass(frozen=True)
class SupervisedData:
    """A supervised stage's records: what its loaders and embedding caches read.

    Attributes:
        data: the opened stage (device, store, ids per part).
        tab: tabular inputs per part (None: an ECG-only model).
        targets: (N, T) targets per part, NaN where missing.
        teacher: the teacher's logits for the training records (distilled), else None.
        cfg, train_cfg: the stage's section and the ``train`` section.
    """

    data: StageData
    tab: Mapping[str, TabularArrays | None]
    targets: Mapping[str, np.ndarray]
    teacher: np.ndarray | None
    cfg: StageConfig
    train_cfg: TrainConfig

    def loader(self, part: str, mode: Mode, shuffle: bool) -> EpochLoader:
        """``part``'s records: random crops (``train``) or all eval crops (``eval``)."""
        ds = ECGDataset(
            self.data.store,
            self.data.ids[part],
            crop_samples=self.train_cfg.crop_samples,
            mode=mode,
            eval_crops=self.train_cfg.eval_crops,
            seed=self.cfg.seed,
            tabular=self.tab[part],
            targets=self.targets[part],
            teacher=self.teacher if part == "train" and mode == "train" else None,
        )
        # drop_last in training: batch norm (tabular encoder) needs >= 2 samples per batch;
        # shuffling per epoch still shows every record.
        return EpochLoader(
            ds,
            self.cfg.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            seed=self.cfg.seed,
            options=loader_options(self.train_cfg.num_workers, self.data.device),
        )

    def embeddings(self, model: SupervisedModel, desc: str) -> dict[str, np.ndarray]:
        """(N, K, D) embeddings of every eval crop of the train and val records, computed in
        the stage's precision (float32 out)."""
        with self.data.precision.autocast():
            return self._embeddings(model, desc)

    def _embeddings(self, model: SupervisedModel, desc: str) -> dict[str, np.ndarray]:
        return {
            part: embed_crops(
                model,
                self.data.store,
                self.data.ids[part],
                self.train_cfg.crop_samples,
                self.train_cfg.eval_crops,
                batch_size=self.cfg.batch_size,
                device=self.data.device,
                tabular=self.tab[part],
                forward=_embed,
                desc=f"{desc} embed {part}",
            )
            for part in ("train", "val")
        }


def _embed(model: nn.Module, batch: Batch) -> torch.Tensor:
    assert isinstance(model, SupervisedModel)
    return model.embed(batch)
