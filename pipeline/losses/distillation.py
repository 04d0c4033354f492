"""Knowledge distillation for multi-label (sigmoid) outputs.

Hinton, Vinyals and Dean (2015), "Distilling the Knowledge in a Neural Network": a student
is trained on a weighted sum of the usual loss on the labels and a cross-entropy towards the
teacher's outputs softened by a temperature T,

    loss = (1 - mix) * BCE(z_s, y) + mix * T^2 * BCE(z_s / T, sigmoid(z_t / T)),

where each of the K labels is its own two-class problem (the softmax of the paper becomes
K sigmoids). The soft term is scaled by T^2 because its gradients shrink as 1/T^2 (the
paper, section 2), so the mix keeps its meaning when T changes. Missing labels (NaN) are
left out of the hard term, as in every supervised stage; the teacher has an output for every
label, so the soft term averages over all of them. Used by ``distilled``: an ECG-only student
of the multimodal classifier (ECG + all tabular data).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.float32 import in_float32


class DistillationOutput(NamedTuple):
    """Result of :class:`DistillationLoss`.

    Attributes:
        loss: ``(1 - mix) * hard + mix * soft``, the scalar to back-propagate.
        hard: Masked BCE towards the labels.
        soft: ``T^2``-scaled BCE towards the teacher's softened probabilities.
    """

    loss: torch.Tensor
    hard: torch.Tensor
    soft: torch.Tensor


class DistillationLoss(nn.Module):
    """Hinton et al. (2015) distillation with one sigmoid per label.

    Args:
        temperature: T > 0; 1 uses the teacher's probabilities as they are, larger values
            soften both sides towards 0.5.
        mix: Weight of the soft term in [0, 1]; 0 is plain BCE on the labels, 1 ignores
            the labels.

    Raises:
        ValueError: If ``temperature`` <= 0 or ``mix`` is outside [0, 1].
    """

    def __init__(self, temperature: float = 2.0, mix: float = 0.5) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"distillation temperature must be > 0, got {temperature}")
        if not 0 <= mix <= 1:
            raise ValueError(f"distillation mix must be in [0, 1], got {mix}")
        self.temperature = float(temperature)
        self.mix = float(mix)

    @in_float32  # BCE terms (log-sigmoid, means over B x K): float32 under autocast
    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor
    ) -> DistillationOutput:
        """Compute the distillation loss.

        Args:
            logits: Student logits, shape (B, K).
            target: Labels (B, K): 0/1, NaN where missing.
            teacher_logits: Teacher logits (B, K), treated as constants.

        Returns:
            A :class:`DistillationOutput`.

        Raises:
            ValueError: If the three shapes differ.
        """
        if not logits.shape == target.shape == teacher_logits.shape:
            raise ValueError(
                f"distillation: shapes differ, logits {tuple(logits.shape)}, target "
                f"{tuple(target.shape)}, teacher {tuple(teacher_logits.shape)}"
            )
        observed = ~torch.isnan(target)  # (B, K)
        safe = torch.where(observed, target, torch.zeros_like(target))
        hard_all = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")  # (B, K)
        hard = torch.where(observed, hard_all, torch.zeros_like(hard_all)).sum()
        hard = hard / observed.sum().clamp(min=1)
        t = self.temperature
        soft_target = torch.sigmoid(teacher_logits.detach() / t)  # (B, K)
        soft = F.binary_cross_entropy_with_logits(logits / t, soft_target) * t**2
        return DistillationOutput((1 - self.mix) * hard + self.mix * soft, hard, soft)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, mix={self.mix}"
