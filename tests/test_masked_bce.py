"""pipeline.losses.masked_bce against a literal, hand-computed reference."""

from __future__ import annotations

import torch

from pipeline.losses import masked_bce


def test_masked_bce_matches_a_literal_over_observed_entries() -> None:
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, float("nan")], [0.0, 1.0]], dtype=torch.float64)
    loss = masked_bce(logits, target)
    # mean over the 3 observed entries of log(1 + exp(-z)) (y = 1) or log(1 + exp(z)) (y = 0):
    # (0.5543552444685271 + 2.1269280110429727 + 0.4740769841801067) / 3
    assert abs(loss.item() - 1.0517867465638686) < 1e-12
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[0, 1] == 0.0  # the missing target sends no gradient
    assert (logits.grad[~torch.isnan(target)] != 0).all()


def test_masked_bce_of_no_observed_target_is_zero() -> None:
    logits = torch.zeros(2, 3)
    assert masked_bce(logits, torch.full((2, 3), float("nan"))).item() == 0.0
