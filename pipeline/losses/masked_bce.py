"""Masked multi-label binary cross-entropy: the supervised stages' loss.

A record's labels or lab targets may be unobserved (a lab never drawn): those entries are
NaN in the target and contribute neither to the loss nor to its normaliser, so the mean
runs over the observed entries only (the usual multi-label BCE of, e.g., Strodthoff et
al. 2021 with missing labels masked out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.float32 import in_float32


@in_float32  # log-sigmoid and a mean over B x K entries: float32 under autocast
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
