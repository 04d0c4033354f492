"""The supervised stages' training loss, one object per model built from its config section.

Every model minimises the masked multi-label BCE of :func:`pipeline.losses.masked_bce`;
two sections add a term:

- ``method_regularised`` (``l2sp_alpha`` > 0): an L2-SP pull of the encoder's trainable
  weights towards their starting, stage-1 values (:class:`pipeline.losses.L2SP`);
- ``distilled``: the BCE becomes Hinton et al.'s (2015) mix of the labels and the teacher's
  softened predictions (:class:`pipeline.losses.DistillationLoss`), read from the batch's
  ``teacher`` logits.

The history then logs the terms beside ``loss`` (``bce`` and ``l2sp``; ``bce`` and
``distill``); a plain model logs none, so its history is what it always was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.losses import L2SP, DistillationLoss
from pipeline.losses.masked_bce import masked_bce
from pipeline.train.data import Batch
from pipeline.train.stage_config import DistilledConfig, StageConfig, l2sp_alpha


@dataclass
class SupervisedLoss:
    """(model, batch) -> (loss, logged terms): the step function of :func:`engine.fit`.

    Attributes:
        l2sp: the pull towards the starting encoder, or None.
        distill: the distillation loss (the batch carries ``teacher``), or None.
    """

    l2sp: L2SP | None = None
    distill: DistillationLoss | None = None

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch)  # (B, K)
        terms: dict[str, torch.Tensor] = {}
        if self.distill is not None:
            out = self.distill(logits, batch["target"], batch["teacher"])
            loss, terms = out.loss, {"bce": out.hard, "distill": out.soft}
        else:
            loss = masked_bce(logits, batch["target"])
        if self.l2sp is not None:
            pull = self.l2sp()
            terms = {"bce": loss, **terms, "l2sp": pull}
            loss = loss + pull
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    @property
    def needs_teacher(self) -> bool:
        return self.distill is not None


def supervised_loss(encoder: nn.Module, cfg: StageConfig) -> SupervisedLoss:
    """The loss of a stage with section ``cfg``.

    Build it right after the model, before any optimiser step or resume: L2-SP snapshots
    the encoder's weights as its reference w0 here.
    """
    alpha = l2sp_alpha(cfg)
    return SupervisedLoss(
        l2sp=L2SP(encoder, alpha) if alpha > 0 else None,
        distill=(
            DistillationLoss(cfg.temperature, cfg.mix) if isinstance(cfg, DistilledConfig) else None
        ),
    )
