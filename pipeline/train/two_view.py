"""ECG-only stage 1: the paper's joint embedding with the tabular branch replaced by the ECG.

``ssl_ecg_only`` asks whether the method's gain comes from the clinical data or from any
self-supervision. Its stage 1 keeps everything of the method's (S4 encoder, projector,
objective, schedule) but pairs each ECG crop with a second, independently placed crop of the
same record instead of the record's tabular data; both crops are augmented
(:mod:`pipeline.train.augment`). As in Barlow Twins' own image setting (Zbontar et al. 2021),
the two views share one encoder and one projector.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.losses import Objective, ObjectiveOutput
from pipeline.models import ECGEncoder, Projector
from pipeline.train.augment import EcgAugmentConfig, augment
from pipeline.train.data import Batch


class TwoViewEmbedding(nn.Module):
    """One ECG encoder + projector applied to two augmented crops of each record.

    Args:
        ecg_encoder: the S4 encoder (its weights are what stage 2 starts from).
        embed_dim: projector output E; hidden: projector hidden width.
        augment_cfg: the augmentations applied to each crop.
        objective: the stage-1 loss between the two views' projections.
    """

    def __init__(
        self,
        ecg_encoder: ECGEncoder,
        embed_dim: int,
        hidden: int,
        augment_cfg: EcgAugmentConfig,
        objective: Objective,
    ) -> None:
        super().__init__()
        self.ecg_encoder = ecg_encoder
        self.ecg_projector = Projector(ecg_encoder.out_dim, hidden, embed_dim)
        self.augment_cfg = augment_cfg
        self.objective = objective

    def forward(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projections of the two augmented crops ``ecg`` and ``ecg_view``, each (B, E).

        ``generator`` draws the augmentations; None uses torch's global CPU generator, whose
        state the resume checkpoint carries, so a resumed run augments as an unbroken one.
        """
        gen = generator if generator is not None else torch.default_generator
        views = (augment(batch[k], gen, self.augment_cfg) for k in ("ecg", "ecg_view"))
        z_a, z_b = (self.ecg_projector(self.ecg_encoder(v)) for v in views)  # (B, E) each
        return z_a, z_b

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> ObjectiveOutput:
        """The objective between the two views of ``batch``."""
        return self.objective(*self(batch, generator))
