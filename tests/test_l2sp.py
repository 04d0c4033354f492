"""L2-SP (Li et al. 2018): the formula in float64 loops, its zero, gradient and exclusions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.losses import L2SP


def literal_l2sp(current: list[np.ndarray], start: list[np.ndarray], alpha: float) -> float:
    """(alpha / 2) * sum_j ||w_j - w0_j||^2, element by element in float64."""
    total = 0.0
    for w, w0 in zip(current, start, strict=True):
        for a, b in zip(w.astype(np.float64).ravel(), w0.astype(np.float64).ravel(), strict=True):
            total += (float(a) - float(b)) ** 2
    return alpha / 2.0 * total


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()


def _perturb(net: nn.Module, seed: int, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("alpha", [0.1, 1.0, 2.5e-3])
def test_matches_literal_float64(alpha: float) -> None:
    net = _net()
    start = [p.detach().numpy().copy() for p in net.parameters()]
    reg = L2SP(net, alpha)
    _perturb(net, 1)
    now = [p.detach().numpy().copy() for p in net.parameters()]
    got = reg()
    assert got.dtype == torch.float64 and got.dim() == 0
    assert got.item() == pytest.approx(literal_l2sp(now, start, alpha), rel=1e-12)


def test_zero_at_the_starting_weights_and_for_alpha_zero() -> None:
    net = _net()
    assert L2SP(net, 0.7)().item() == 0.0
    reg_off = L2SP(net, 0.0)
    _perturb(net, 2)
    assert reg_off().item() == 0.0


def test_gradient_is_alpha_times_the_displacement() -> None:
    net, alpha = _net(), 0.3
    start = [p.detach().clone() for p in net.parameters()]
    reg = L2SP(net, alpha)
    _perturb(net, 3)
    reg().backward()
    for p, w0 in zip(net.parameters(), start, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, alpha * (p.detach() - w0), rtol=1e-12, atol=0)


def test_frozen_parameters_are_excluded() -> None:
    net = _net()
    first = net[0]
    for p in first.parameters():
        p.requires_grad_(False)
    reg = L2SP(net, 1.0)
    assert reg.names == ("2.weight", "2.bias")
    with torch.no_grad():  # moving a frozen tensor (it cannot train) costs nothing
        first.weight.add_(5.0)
    assert reg().item() == 0.0
    with torch.no_grad():
        net[2].bias.add_(1.0)
    assert reg().item() == pytest.approx(0.5 * net[2].bias.numel())


def test_reference_is_a_copy_and_not_in_the_state_dict() -> None:
    net = _net()
    reg = L2SP(net, 1.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    _perturb(net, 4)  # in-place updates, like an optimiser step, must not move w0
    assert reg().item() > 0
    assert list(reg.state_dict()) == [] and list(reg.parameters()) == []
    assert set(net.state_dict()) == set(before)


def test_no_trainable_parameters_and_bad_alpha() -> None:
    net = _net()
    for p in net.parameters():
        p.requires_grad_(False)
    assert L2SP(net, 1.0)().item() == 0.0
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        L2SP(_net(), -0.1)
