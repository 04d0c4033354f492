"""Barlow Twins loss: formula, invariances, gradients, and the joint-normalisation bug."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.losses import BarlowTwinsLoss, BarlowTwinsOutput


def literal_barlow_twins(za: np.ndarray, zb: np.ndarray, lambd: float, eps: float) -> tuple:
    """Zbontar et al. (2021) written out with loops in float64, independent of the module."""
    za = za.astype(np.float64)
    zb = zb.astype(np.float64)
    n, d = za.shape

    def norm(z: np.ndarray) -> np.ndarray:
        out = np.empty_like(z)
        for j in range(d):
            col = z[:, j]
            mu = sum(col) / n
            var = sum((x - mu) ** 2 for x in col) / n
            out[:, j] = (col - mu) / np.sqrt(var + eps)
        return out

    a, b = norm(za), norm(zb)
    on = 0.0
    off = 0.0
    for i in range(d):
        for j in range(d):
            cij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            if i == j:
                on += (1.0 - cij) ** 2
            else:
                off += cij**2
    return on + lambd * off, on, lambd * off


def _pair(seed: int, n: int = 12, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(n, d, generator=g, dtype=torch.float64)
    zb = 0.6 * za + torch.randn(n, d, generator=g, dtype=torch.float64)
    return za, zb


@pytest.mark.parametrize("lambd", [5e-3, 0.3])
def test_matches_literal_float64(lambd: float) -> None:
    za, zb = _pair(0)
    out = BarlowTwinsLoss(lambd=lambd)(za, zb)
    assert isinstance(out, BarlowTwinsOutput)
    loss, on, off = literal_barlow_twins(za.numpy(), zb.numpy(), lambd, 1e-5)
    assert out.loss.item() == pytest.approx(loss, rel=1e-12)
    assert out.on_diag.item() == pytest.approx(on, rel=1e-12)
    assert out.off_diag.item() == pytest.approx(off, rel=1e-12)
    assert out.loss.item() == pytest.approx(out.on_diag.item() + out.off_diag.item(), rel=1e-12)


def test_float32_close_to_literal() -> None:
    za, zb = _pair(1, n=64, d=16)
    out = BarlowTwinsLoss()(za.float(), zb.float())
    loss, _, _ = literal_barlow_twins(za.numpy(), zb.numpy(), 5e-3, 1e-5)
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("branch", ["a", "b"])
def test_invariant_to_per_dimension_affine(branch: str) -> None:
    za, zb = _pair(2)
    g = torch.Generator().manual_seed(3)
    scale = torch.rand(za.shape[1], generator=g, dtype=torch.float64) * 5 + 0.2  # > 0
    shift = torch.randn(za.shape[1], generator=g, dtype=torch.float64) * 10
    loss_fn = BarlowTwinsLoss(eps=0.0)  # eps would make the invariance only approximate
    base = loss_fn(za, zb)
    moved = loss_fn(za * scale + shift, zb) if branch == "a" else loss_fn(za, zb * scale + shift)
    for x, y in zip(base, moved, strict=True):
        assert x.item() == pytest.approx(y.item(), rel=1e-10)
    # With the default eps the change stays tiny for unit-scale data.
    default = BarlowTwinsLoss()
    assert default(za, zb * scale + shift).loss.item() == pytest.approx(
        default(za, zb).loss.item(), rel=1e-3
    )


def test_negative_scale_is_not_invariant() -> None:
    """A sign flip turns C_ii into -C_ii: the loss must see it (the test above can fail)."""
    za, zb = _pair(4)
    loss_fn = BarlowTwinsLoss()
    assert loss_fn(za, -zb).loss.item() > loss_fn(za, zb).loss.item() + 1.0


def test_permutation_properties() -> None:
    za, zb = _pair(5)
    loss_fn = BarlowTwinsLoss(lambd=0.1)
    base = loss_fn(za, zb)
    # Swapping the branches transposes C: same diagonal, same set of off-diagonal terms.
    swapped = loss_fn(zb, za)
    # Permuting the samples of both branches together leaves every C_ij unchanged.
    rows = torch.randperm(za.shape[0], generator=torch.Generator().manual_seed(6))
    by_rows = loss_fn(za[rows], zb[rows])
    # Permuting the dimensions of both branches together permutes C's rows and columns alike.
    cols = torch.randperm(za.shape[1], generator=torch.Generator().manual_seed(7))
    by_cols = loss_fn(za[:, cols], zb[:, cols])
    for other in (swapped, by_rows, by_cols):
        for x, y in zip(base, other, strict=True):
            assert x.item() == pytest.approx(y.item(), rel=1e-12)
    # Permuting the samples of one branch only breaks the pairing and raises the loss.
    assert loss_fn(za[rows], zb).loss.item() > base.loss.item()


def test_perfectly_correlated_decorrelated_dims_give_zero() -> None:
    n, d = 32, 6
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    x = x - x.mean(dim=0)
    q, _ = torch.linalg.qr(x)  # (n, d) orthonormal, zero-mean columns
    out = BarlowTwinsLoss()(q, 3.0 * q + 1.0)
    assert out.loss.item() < 1e-6
    assert out.off_diag.item() < 1e-20


def test_joint_normalisation_bug_is_not_present() -> None:
    """Branches on different scales: joint normalisation differs from per-branch."""
    za, zb = _pair(9)
    zb = 10.0 * zb + 4.0
    lambd, eps = 5e-3, 1e-5
    ours = BarlowTwinsLoss(lambd=lambd, eps=eps)(za, zb).loss.item()
    per_branch, _, _ = literal_barlow_twins(za.numpy(), zb.numpy(), lambd, eps)
    both = torch.cat([za, zb]).numpy()
    mu, sd = both.mean(axis=0), np.sqrt(both.var(axis=0) + eps)
    a, b = (za.numpy() - mu) / sd, (zb.numpy() - mu) / sd
    c = a.T @ b / za.shape[0]
    joint = ((1 - np.diag(c)) ** 2).sum() + lambd * (c**2).sum() - lambd * (np.diag(c) ** 2).sum()
    assert abs(per_branch - joint) > 0.5
    assert ours == pytest.approx(per_branch, rel=1e-12)


def test_gradients_reach_both_inputs_and_encoders() -> None:
    torch.manual_seed(10)
    enc_a, enc_b = nn.Linear(7, 4), nn.Linear(3, 4)
    xa, xb = torch.randn(16, 7), torch.randn(16, 3)
    za, zb = enc_a(xa), enc_b(xb)
    za.retain_grad()
    zb.retain_grad()
    BarlowTwinsLoss()(za, zb).loss.backward()
    for t in (za.grad, zb.grad, enc_a.weight.grad, enc_b.weight.grad):
        assert t is not None
        assert torch.isfinite(t).all()
        assert t.abs().sum().item() > 0


def test_gradient_matches_finite_differences() -> None:
    za, zb = _pair(11, n=6, d=3)
    za.requires_grad_(True)
    zb.requires_grad_(True)
    loss_fn = BarlowTwinsLoss(lambd=0.2)
    assert torch.autograd.gradcheck(lambda a, b: loss_fn(a, b).loss, (za, zb))


def test_bad_inputs_raise_clear_errors() -> None:
    loss_fn = BarlowTwinsLoss()
    with pytest.raises(ValueError, match="at least 2"):
        loss_fn(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(torch.randn(8, 4), torch.randn(8, 5))
    with pytest.raises(ValueError, match="2-D"):
        loss_fn(torch.randn(8, 4, 2), torch.randn(8, 4, 2))
    with pytest.raises(ValueError, match="lambd"):
        BarlowTwinsLoss(lambd=-1.0)
