"""Distillation (Hinton et al. 2015): literal reference, limits, gradients, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.losses import DistillationLoss, DistillationOutput


def _bce(z: float, y: float) -> float:
    """-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))), written out."""
    p = 1.0 / (1.0 + math.exp(-z))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def literal_distillation(
    zs: np.ndarray, y: np.ndarray, zt: np.ndarray, t: float, mix: float
) -> tuple[float, float, float]:
    """The paper's weighted sum with loops in float64: (loss, hard, soft)."""
    n, k = zs.shape
    hard_terms = [_bce(zs[i, j], y[i, j]) for i in range(n) for j in range(k) if y[i, j] == y[i, j]]
    hard = sum(hard_terms) / len(hard_terms)
    soft_terms = [
        _bce(zs[i, j] / t, 1.0 / (1.0 + math.exp(-zt[i, j] / t)))
        for i in range(n)
        for j in range(k)
    ]
    soft = t * t * sum(soft_terms) / (n * k)
    return (1 - mix) * hard + mix * soft, hard, soft


def _batch(seed: int, n: int = 8, k: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    zs = 2 * torch.randn(n, k, generator=g, dtype=torch.float64)
    zt = 3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = (torch.rand(n, k, generator=g, dtype=torch.float64) < 0.3).double()
    y[torch.rand(n, k, generator=g) < 0.2] = float("nan")  # missing labels
    return zs, y, zt


@pytest.mark.parametrize(("t", "mix"), [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9), (0.5, 0.0), (3.0, 1.0)])
def test_matches_literal_float64(t: float, mix: float) -> None:
    zs, y, zt = _batch(0)
    out = DistillationLoss(t, mix)(zs, y, zt)
    assert isinstance(out, DistillationOutput)
    ref = literal_distillation(zs.numpy(), y.numpy(), zt.numpy(), t, mix)
    for got, want in zip(out, ref, strict=True):
        assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_mix_zero_is_the_masked_bce_of_the_supervised_stages() -> None:
    from pipeline.losses import masked_bce

    zs, y, zt = _batch(1)
    out = DistillationLoss(temperature=3.0, mix=0.0)(zs, y, zt)
    assert out.loss.item() == pytest.approx(masked_bce(zs, y).item(), rel=1e-12)


def test_soft_term_is_smallest_when_the_student_copies_the_teacher() -> None:
    _, y, zt = _batch(2)
    loss = DistillationLoss(temperature=2.0, mix=1.0)
    at_teacher = loss(zt.clone(), y, zt).soft.item()
    for shift in (-1.0, -0.1, 0.1, 1.0):
        assert loss(zt + shift, y, zt).soft.item() > at_teacher


def test_gradient_flows_to_the_student_only() -> None:
    zs, y, zt = _batch(3)
    zs.requires_grad_(True)
    zt.requires_grad_(True)
    DistillationLoss(2.0, 0.5)(zs, y, zt).loss.backward()
    assert zs.grad is not None and torch.isfinite(zs.grad).all() and zs.grad.abs().sum() > 0
    assert zt.grad is None  # the teacher is a constant target


def test_t_squared_keeps_the_soft_gradient_scale() -> None:
    """The T^2 factor (the paper's section 2): the soft term's gradient does not vanish as T
    grows; for large T it tends to (z_s - z_t) / (4 K B) per entry, independent of T."""
    zs, y, zt = _batch(4)
    grads = []
    for t in (8.0, 64.0):
        z = zs.clone().requires_grad_(True)
        DistillationLoss(t, 1.0)(z, y, zt).loss.backward()
        assert z.grad is not None
        grads.append(z.grad)
    n, k = zs.shape
    limit = (zs - zt) / (4 * n * k)
    assert torch.allclose(grads[1], limit, rtol=0.01, atol=1e-6)
    assert torch.allclose(grads[0], grads[1], rtol=0.1, atol=1e-5)


def test_all_labels_missing_leaves_the_soft_term() -> None:
    zs, _, zt = _batch(5)
    y = torch.full_like(zs, float("nan"))
    out = DistillationLoss(2.0, 0.5)(zs, y, zt)
    assert out.hard.item() == 0.0
    assert out.loss.item() == pytest.approx(0.5 * out.soft.item())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"mix": 1.5}, r"mix must be in \[0, 1\]"),
        ({"mix": -0.1}, r"mix must be in \[0, 1\]"),
    ],
)
def test_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DistillationLoss(**kwargs)


def test_shape_mismatch_names_the_shapes() -> None:
    zs, y, zt = _batch(6)
    with pytest.raises(ValueError, match=r"teacher \(8, 4\)"):
        DistillationLoss()(zs, y, zt[:, :4])
