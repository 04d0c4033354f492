"""VICReg loss: formula, the three terms' zero sets, invariances, gradients, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.losses import VICRegLoss, VICRegOutput


def literal_vicreg(
    za: np.ndarray, zb: np.ndarray, lam: float, mu: float, nu: float, gamma: float, eps: float
) -> tuple[float, float, float, float]:
    """Bardes et al. (2022), eq. (6) / Algorithm 1, with loops in float64."""
    za = za.astype(np.float64)
    zb = zb.astype(np.float64)
    n, d = za.shape
    inv = sum((za[k, j] - zb[k, j]) ** 2 for k in range(n) for j in range(d)) / (n * d)

    def var_and_cov(z: np.ndarray) -> tuple[float, float]:
        means = [sum(z[k, j] for k in range(n)) / n for j in range(d)]
        c = np.empty((d, d))
        for i in range(d):
            for j in range(d):
                c[i, j] = sum((z[k, i] - means[i]) * (z[k, j] - means[j]) for k in range(n))
                c[i, j] /= n - 1
        v = sum(max(0.0, gamma - math.sqrt(c[j, j] + eps)) for j in range(d)) / d
        off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, off

    va, ca = var_and_cov(za)
    vb, cb = var_and_cov(zb)
    var, cov = va + vb, ca + cb
    return lam * inv + mu * var + nu * cov, inv, var, cov


def _pair(seed: int, n: int = 12, d: int = 5, sd: float = 0.7) -> tuple[torch.Tensor, ...]:
    # sd < gamma so that the variance hinge is active on most dimensions.
    g = torch.Generator().manual_seed(seed)
    za = sd * torch.randn(n, d, generator=g, dtype=torch.float64)
    zb = 0.5 * za + sd * torch.randn(n, d, generator=g, dtype=torch.float64) + 0.3
    return za, zb


@pytest.mark.parametrize(
    ("weights", "gamma", "eps"),
    [((25.0, 25.0, 1.0), 1.0, 1e-4), ((1.0, 3.0, 0.5), 0.8, 0.0), ((0.0, 0.0, 1.0), 2.0, 1e-2)],
)
def test_matches_literal_float64(
    weights: tuple[float, float, float], gamma: float, eps: float
) -> None:
    za, zb = _pair(0)
    lam, mu, nu = weights
    out = VICRegLoss(lam, mu, nu, gamma=gamma, eps=eps)(za, zb)
    assert isinstance(out, VICRegOutput)
    ref = literal_vicreg(za.numpy(), zb.numpy(), lam, mu, nu, gamma, eps)
    for got, want in zip(out, ref, strict=True):
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-12)
    assert out.variance.item() > 0.1  # the hinge was active: the comparison covered it
    assert out.covariance.item() > 1e-3


def test_defaults_are_the_paper_values() -> None:
    f = VICRegLoss()
    assert (f.inv_weight, f.var_weight, f.cov_weight, f.gamma, f.eps) == (25, 25, 1, 1, 1e-4)


def test_float32_close_to_literal() -> None:
    za, zb = _pair(1, n=64, d=16)
    out = VICRegLoss()(za.float(), zb.float())
    loss, _, _, _ = literal_vicreg(za.numpy(), zb.numpy(), 25.0, 25.0, 1.0, 1.0, 1e-4)
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(loss, rel=1e-5)


def test_invariance_zero_for_identical_inputs_only() -> None:
    za, zb = _pair(2)
    loss_fn = VICRegLoss()
    assert loss_fn(za, za.clone()).invariance.item() == 0.0
    assert loss_fn(za, zb).invariance.item() > 0.1


def test_variance_zero_iff_every_std_reaches_gamma() -> None:
    za, _ = _pair(3, n=40, d=6)
    za = (za - za.mean(0)) / za.std(0)  # unit std per dimension
    loss_fn = VICRegLoss(gamma=1.0, eps=1e-4)
    # sqrt(1 * s^2 + eps) >= 1 for s >= 1: every hinge is at zero.
    assert loss_fn(1.0 * za, 2.0 * za).variance.item() == 0.0
    # One dimension shrunk below gamma on one branch: exactly that hinge turns on.
    shrunk = za.clone()
    shrunk[:, 2] *= 0.5
    got = loss_fn(shrunk, 2.0 * za).variance.item()
    assert got == pytest.approx((1.0 - math.sqrt(0.25 + 1e-4)) / 6, rel=1e-10)
    # A collapsed branch (constant rows) pays about gamma on each side: 2 * (1 - sqrt(eps)).
    const = torch.ones_like(za)
    assert loss_fn(const, const).variance.item() == pytest.approx(2 * (1 - 1e-2), rel=1e-10)


def test_covariance_zero_for_decorrelated_inputs() -> None:
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(dim=0))  # zero-mean orthonormal columns
    q = q * math.sqrt(31)  # unit sample variance per column
    scales = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5, 0.7], dtype=torch.float64)
    out = VICRegLoss()(q * scales, q * scales.flip(0) + 5.0)  # diagonal covariances
    assert out.covariance.item() < 1e-25
    # Mixing two of the columns correlates them: the term must notice.
    mixed = q.clone()
    mixed[:, 0] += mixed[:, 1]
    assert VICRegLoss()(mixed, q).covariance.item() == pytest.approx(2 / 6, rel=1e-10)


def test_symmetry_and_invariances() -> None:
    za, zb = _pair(5)
    loss_fn = VICRegLoss(1.0, 2.0, 3.0)
    base = loss_fn(za, zb)
    rows = torch.randperm(za.shape[0], generator=torch.Generator().manual_seed(6))
    cols = torch.randperm(za.shape[1], generator=torch.Generator().manual_seed(7))
    others = (
        loss_fn(zb, za),  # every term is symmetric in the branches
        loss_fn(za[rows], zb[rows]),  # joint sample permutation
        loss_fn(za[:, cols], zb[:, cols]),  # joint dimension permutation
        loss_fn(za + 4.0, zb + 4.0),  # a common shift changes no difference or (co)variance
    )
    for other in others:
        for x, y in zip(base, other, strict=True):
            assert x.item() == pytest.approx(y.item(), rel=1e-10)
    # Breaking the pairing raises the invariance term; a one-branch shift too.
    assert loss_fn(za[rows], zb).invariance.item() > base.invariance.item()
    assert loss_fn(za + 1.0, zb).invariance.item() > base.invariance.item() + 0.5


def test_gradients_reach_both_inputs_and_encoders() -> None:
    torch.manual_seed(8)
    enc_a, enc_b = nn.Linear(7, 4), nn.Linear(3, 4)
    za, zb = enc_a(torch.randn(16, 7)), enc_b(torch.randn(16, 3))
    za.retain_grad()
    zb.retain_grad()
    VICRegLoss()(za, zb).loss.backward()
    for t in (za.grad, zb.grad, enc_a.weight.grad, enc_b.weight.grad):
        assert t is not None
        assert torch.isfinite(t).all()
        assert t.abs().sum().item() > 0


def test_gradient_matches_finite_differences() -> None:
    za, zb = _pair(9, n=6, d=3)
    za.requires_grad_(True)
    zb.requires_grad_(True)
    loss_fn = VICRegLoss(1.0, 2.0, 0.5)
    assert torch.autograd.gradcheck(lambda a, b: loss_fn(a, b).loss, (za, zb))


def test_bad_inputs_raise_clear_errors() -> None:
    loss_fn = VICRegLoss()
    with pytest.raises(ValueError, match="at least 2"):
        loss_fn(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(torch.randn(8, 4), torch.randn(8, 5))
    with pytest.raises(ValueError, match="2-D"):
        loss_fn(torch.randn(8, 4, 2), torch.randn(8, 4, 2))
    with pytest.raises(ValueError, match="var_weight"):
        VICRegLoss(var_weight=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        VICRegLoss(gamma=0.0)
