"""CLIP symmetric InfoNCE: formula, temperature, invariances, limits, gradients, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.losses import ClipLoss, ClipOutput


def literal_clip(za: np.ndarray, zb: np.ndarray, scale: float) -> tuple[float, float, float]:
    """Radford et al. (2021), Figure 3, with loops in float64: (loss, a_to_b, b_to_a)."""
    n, d = za.shape

    def unit(z: np.ndarray) -> list[list[float]]:
        rows = []
        for i in range(n):
            norm = math.sqrt(sum(float(z[i, k]) ** 2 for k in range(d)))
            rows.append([float(z[i, k]) / norm for k in range(d)])
        return rows

    a, b = unit(za), unit(zb)
    s = [[scale * sum(a[i][k] * b[j][k] for k in range(d)) for j in range(n)] for i in range(n)]
    a_to_b = -sum(s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(n))) for i in range(n))
    b_to_a = -sum(s[j][j] - math.log(sum(math.exp(s[i][j]) for i in range(n))) for j in range(n))
    return (a_to_b + b_to_a) / (2 * n), a_to_b / n, b_to_a / n


def _pair(seed: int, n: int = 10, d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(n, d, generator=g, dtype=torch.float64)
    zb = za + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return za, zb


@pytest.mark.parametrize(("temperature", "learnable"), [(0.07, True), (0.5, False), (0.01, True)])
def test_matches_literal_float64(temperature: float, learnable: bool) -> None:
    za, zb = _pair(0)
    loss_fn = ClipLoss(temperature, learnable_temperature=learnable).double()
    # The log-scale is created in float32; restore it exactly in float64 for the 1e-10 match.
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / temperature), rel=1e-7)
    with torch.no_grad():
        loss_fn.logit_scale.fill_(math.log(1 / temperature))
    out = loss_fn(za, zb)
    assert isinstance(out, ClipOutput)
    ref = literal_clip(za.numpy(), zb.numpy(), 1.0 / temperature)
    assert out.scale.item() == pytest.approx(1.0 / temperature, rel=1e-12)
    for got, want in zip(out[:3], ref, strict=True):
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(want, rel=1e-10)
    # The two directions differ for a generic pair: both were really compared.
    assert abs(out.a_to_b.item() - out.b_to_a.item()) > 1e-3


def test_float32_close_to_literal() -> None:
    za, zb = _pair(1, n=32, d=16)
    out = ClipLoss()(za.float(), zb.float())
    loss, _, _ = literal_clip(za.numpy(), zb.numpy(), 1.0 / 0.07)
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(loss, rel=1e-5)


def test_temperature_initialisation_and_clamp() -> None:
    loss_fn = ClipLoss().double()
    assert isinstance(loss_fn.logit_scale, nn.Parameter)
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-7)
    # Pushed past the clamp, the scale stops at 100 and the loss uses exactly 100.
    with torch.no_grad():
        loss_fn.logit_scale.fill_(math.log(1000.0))
    za, zb = _pair(2)
    out = loss_fn(za, zb)
    assert out.scale.item() == 100.0
    assert out.loss.item() == pytest.approx(literal_clip(za.numpy(), zb.numpy(), 100.0)[0], 1e-10)
    out.loss.backward()
    assert loss_fn.logit_scale.grad is not None
    assert loss_fn.logit_scale.grad.item() == 0.0  # clamped: no push further up
    with pytest.raises(ValueError, match="max_scale"):
        ClipLoss(temperature=0.005)  # 1 / 0.005 = 200 > 100


def test_fixed_temperature_has_no_parameters() -> None:
    loss_fn = ClipLoss(0.2, learnable_temperature=False)
    assert list(loss_fn.parameters()) == []
    assert "logit_scale" in loss_fn.state_dict()  # still saved with a checkpoint
    assert loss_fn(*_pair(3)).scale.item() == pytest.approx(5.0, rel=1e-6)


def test_symmetric_in_swapping_branches() -> None:
    za, zb = _pair(4)
    loss_fn = ClipLoss().double()
    out, swapped = loss_fn(za, zb), loss_fn(zb, za)
    assert out.loss.item() == pytest.approx(swapped.loss.item(), rel=1e-12)
    assert out.a_to_b.item() == pytest.approx(swapped.b_to_a.item(), rel=1e-12)
    assert out.b_to_a.item() == pytest.approx(swapped.a_to_b.item(), rel=1e-12)


def test_random_embeddings_give_about_log_batch() -> None:
    g = torch.Generator().manual_seed(5)
    za = torch.randn(64, 256, generator=g, dtype=torch.float64)
    zb = torch.randn(64, 256, generator=g, dtype=torch.float64)
    # tau = 1: cosines of independent vectors are ~N(0, 1/D), so every row is ~uniform.
    loss = ClipLoss(1.0, learnable_temperature=False).double()(za, zb).loss.item()
    assert abs(loss - math.log(64)) < 0.02
    # Paired views (a noisy copy) must score clearly below chance.
    paired = ClipLoss(1.0, learnable_temperature=False).double()(za, za + 0.1 * zb).loss.item()
    assert paired < math.log(64) - 0.5


def test_aligned_well_separated_low_temperature_is_near_zero() -> None:
    x = torch.randn(16, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    q, _ = torch.linalg.qr(x)  # orthonormal rows: cos = 1 on the diagonal, 0 elsewhere
    loss_fn = ClipLoss(0.01).double()  # scale 100
    assert loss_fn(q, 3.0 * q).loss.item() < 1e-30  # log(1 + 15 e^-100)
    # The same rows mismatched (a cyclic shift) are maximally wrong: loss ~ 100.
    assert loss_fn(q, q.roll(1, dims=0)).loss.item() == pytest.approx(100.0, rel=1e-6)


def test_invariant_to_positive_rescaling_of_rows() -> None:
    za, zb = _pair(7)
    g = torch.Generator().manual_seed(8)
    sa = torch.rand(za.shape[0], 1, generator=g, dtype=torch.float64) * 10 + 0.01
    sb = torch.rand(zb.shape[0], 1, generator=g, dtype=torch.float64) * 10 + 0.01
    loss_fn = ClipLoss().double()
    base, scaled = loss_fn(za, zb), loss_fn(za * sa, zb * sb)
    for x, y in zip(base, scaled, strict=True):
        assert x.item() == pytest.approx(y.item(), rel=1e-12)
    # A sign flip is not a positive rescaling: it turns the positive pairs' cosine around.
    assert loss_fn(za, -zb).loss.item() > base.loss.item() + 1.0


def test_permutations() -> None:
    za, zb = _pair(9)
    loss_fn = ClipLoss().double()
    base = loss_fn(za, zb).loss.item()
    rows = torch.randperm(za.shape[0], generator=torch.Generator().manual_seed(10))
    cols = torch.randperm(za.shape[1], generator=torch.Generator().manual_seed(11))
    assert loss_fn(za[rows], zb[rows]).loss.item() == pytest.approx(base, rel=1e-12)
    assert loss_fn(za[:, cols], zb[:, cols]).loss.item() == pytest.approx(base, rel=1e-12)
    assert loss_fn(za[rows], zb).loss.item() > base + 0.5  # broken pairing


def test_single_sample_batch_is_zero() -> None:
    assert ClipLoss()(torch.randn(1, 4), torch.randn(1, 4)).loss.item() == 0.0


def test_gradients_reach_both_branches_and_the_temperature() -> None:
    torch.manual_seed(12)
    enc_a, enc_b = nn.Linear(7, 4), nn.Linear(3, 4)
    za, zb = enc_a(torch.randn(16, 7)), enc_b(torch.randn(16, 3))
    za.retain_grad()
    zb.retain_grad()
    loss_fn = ClipLoss()
    loss_fn(za, zb).loss.backward()
    for t in (za.grad, zb.grad, enc_a.weight.grad, enc_b.weight.grad, loss_fn.logit_scale.grad):
        assert t is not None
        assert torch.isfinite(t).all()
        assert t.abs().sum().item() > 0


def test_gradient_matches_finite_differences() -> None:
    za, zb = _pair(13, n=5, d=3)
    za.requires_grad_(True)
    zb.requires_grad_(True)
    loss_fn = ClipLoss(0.3).double()
    assert torch.autograd.gradcheck(lambda a, b: loss_fn(a, b).loss, (za, zb))
    # The temperature's gradient against a central finite difference in log(1 / tau).
    a, b = za.detach(), zb.detach()
    loss_fn.zero_grad()
    loss_fn(a, b).loss.backward()
    grad = loss_fn.logit_scale.grad
    assert grad is not None
    h, base = 1e-6, loss_fn.logit_scale.item()
    values = []
    for shift in (h, -h):
        with torch.no_grad():
            loss_fn.logit_scale.fill_(base + shift)
        values.append(loss_fn(a, b).loss.item())
    assert grad.item() == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-6)


def test_bad_inputs_raise_clear_errors() -> None:
    loss_fn = ClipLoss()
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(torch.randn(8, 4), torch.randn(8, 5))
    with pytest.raises(ValueError, match="2-D"):
        loss_fn(torch.randn(8, 4, 2), torch.randn(8, 4, 2))
    with pytest.raises(ValueError, match="at least 1"):
        loss_fn(torch.randn(0, 4), torch.randn(0, 4))
    with pytest.raises(ValueError, match="temperature"):
        ClipLoss(temperature=0.0)
