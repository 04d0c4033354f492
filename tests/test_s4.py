"""S4 layer: HiPPO init, kernel == unrolled recurrence, gradients, causality, backends.

Layer tests run on the ``device`` fixture (tests/conftest.py): CPU by default,
``S4_TEST_DEVICE=cuda`` for a GPU (bench/gpu_check.sh).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.s4 import S4Layer, hippo_legs_nplr, s4d_init


def _layer(
    mode: str, bidirectional: bool, device: torch.device, seed: int = 0, **kw: object
) -> S4Layer:
    """Tiny float64 layer with randomised (not just initial) SSM parameters, on ``device``.

    Parameters are drawn on the CPU, so every device tests the same layer.
    """
    torch.manual_seed(seed)
    layer = S4Layer(2, 4, mode=mode, bidirectional=bidirectional, kernel_backend="torch", **kw)
    layer = layer.double()
    with torch.no_grad():
        layer.log_dt.uniform_(-2.0, -0.5)  # dt in [0.14, 0.6]: kernels decay within ~10 taps
        layer.im.add_(torch.randn_like(layer.im))
        layer.b.add_(0.3 * torch.randn_like(layer.b))
        if mode == "dplr":
            layer.p.add_(0.3 * torch.randn_like(layer.p))
    return layer.to(device).eval()


def _recurrence(layer: S4Layer, u: torch.Tensor, row: int) -> torch.Tensor:
    """Unrolled x_k = Abar x_{k-1} + Bbar u_k, y_k = C x_k on the full N-dim complex state.

    DPLR: bilinear Abar = (I - dt/2 A)^-1 (I + dt/2 A), Bbar = (I - dt/2 A)^-1 dt B with
    A = diag(Lambda, conj Lambda) - P P^*. Diag: zero-order hold, Abar = exp(dt A),
    Bbar = (exp(dt A) - 1) / A * B. Built here independently of the layer's kernel code.
    """
    s = layer.ssm_params()
    dt = s["dt"].detach()
    full = {k: torch.cat([t.detach(), t.detach().conj()], -1) for k, t in s.items() if k != "dt"}
    lam, b, c = full["lam"], full["b"], full["c"][row]  # (H, N), (H, N), (H, N)
    n = lam.shape[-1]
    if layer.mode == "dplr":
        a = torch.diag_embed(lam) - full["p"][:, :, None] * full["p"].conj()[:, None, :]
        eye = torch.eye(n, dtype=a.dtype, device=a.device)
        lhs = eye - (dt / 2)[:, None, None] * a
        abar = torch.linalg.solve(lhs, eye + (dt / 2)[:, None, None] * a)  # (H, N, N)
        bbar = torch.linalg.solve(lhs, (dt[:, None] * b)[..., None])[..., 0]  # (H, N)
    else:
        da = dt[:, None] * lam
        abar, bbar = torch.diag_embed(da.exp()), (da.exp() - 1) / lam * b
    x = torch.zeros(u.shape[0], u.shape[1], n, dtype=lam.dtype, device=lam.device)  # (B, H, N)
    ys = []
    for k in range(u.shape[-1]):
        x = torch.einsum("hnm,bhm->bhn", abar, x) + bbar * u[..., k, None]
        ys.append((c * x).sum(-1))
    y = torch.stack(ys, dim=-1)  # (B, H, L)
    assert y.imag.abs().max() < 1e-10  # conjugate pairs make the output real
    return y.real


@pytest.mark.parametrize("mode", ["dplr", "diag"])
@pytest.mark.parametrize("length", [10, 13])
def test_convolution_equals_unrolled_recurrence(
    mode: str, length: int, device: torch.device
) -> None:
    layer = _layer(mode, bidirectional=True, device=device)
    u = torch.randn(3, 2, length, dtype=torch.float64).to(device)
    y = layer.convolve(u) - layer.d.detach()[:, None] * u  # (B, H, L) SSM part only
    forward = _recurrence(layer, u, row=0)
    # Backward kernel: the same recurrence on the time-reversed input, shifted so that output t
    # sees only the strictly future samples u_{t+1}, ..., u_{L-1}.
    backward = _recurrence(layer, u.flip(-1), row=1).flip(-1)
    backward = torch.cat([backward[..., 1:], torch.zeros_like(backward[..., :1])], dim=-1)
    torch.testing.assert_close(y, forward + backward, rtol=1e-9, atol=1e-9)


class _KernelOf(torch.nn.Module):
    """Exposes ``layer.kernel(L)`` as forward so that functional_call can swap parameters."""

    def __init__(self, layer: S4Layer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, length: int) -> torch.Tensor:
        return self.layer.kernel(length)


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_kernel_gradcheck_float64(mode: str, device: torch.device) -> None:
    layer = _layer(mode, bidirectional=True, device=device)
    names = [n for n, _ in layer.named_parameters() if not n.startswith("output_linear")]
    params = tuple(
        dict(layer.named_parameters())[n].detach().clone().requires_grad_() for n in names
    )
    wrapper = _KernelOf(layer)

    def kernel(*ps: torch.Tensor) -> torch.Tensor:
        state = {f"layer.{n}": p for n, p in zip(names, ps, strict=True)}
        return torch.func.functional_call(wrapper, state, (6,), strict=False)

    assert torch.autograd.gradcheck(kernel, params)


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_backends_agree_on_layer_kernel(mode: str, device: torch.device) -> None:
    layer = _layer(mode, bidirectional=True, device=device, seed=3)
    ref = layer.kernel(12, backend="naive")
    for backend in ("torch", "keops"):
        torch.testing.assert_close(layer.kernel(12, backend=backend), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_causal_and_bidirectional(mode: str, device: torch.device) -> None:
    u = torch.randn(2, 2, 40, dtype=torch.float64).to(device)
    bump = u.clone()
    bump[..., 25] += 1.0
    causal = _layer(mode, bidirectional=False, device=device)
    diff = (causal(bump) - causal(u)).abs().amax(dim=(0, 1))  # (L,)
    assert diff[:25].max() < 1e-12 and diff[25:].max() > 1e-6  # FFT round-off only
    both = _layer(mode, bidirectional=True, device=device)
    diff = (both(bump) - both(u)).abs().amax(dim=(0, 1))
    assert diff[:25].max() > 1e-6 and diff[25:].max() > 1e-6


@pytest.mark.parametrize("length", [1, 2, 7, 250])
def test_any_length_float32(length: int, device: torch.device) -> None:
    layer = S4Layer(8, 8, kernel_backend="torch", dropout=0.1).to(device)
    y = layer(torch.randn(3, 8, length, device=device))
    assert y.shape == (3, 8, length) and y.dtype == torch.float32 and torch.isfinite(y).all()


def test_float32_kernel_stable_at_long_length(device: torch.device) -> None:
    """At L = 5000 with the smallest init step, float32 stays close to float64.

    On CUDA the fixture turns TF32 off: with TF32 matmuls the float32 kernel is not float32.
    """
    layer = S4Layer(4, 8, mode="dplr", kernel_backend="torch", dt_min=1e-3, dt_max=1e-3)
    layer = layer.to(device)
    k32 = layer.kernel(5000)
    k64 = layer.double().kernel(5000)
    err = (k32.double() - k64).abs().max() / k64.abs().max()
    assert err < 1e-3 and k32.abs().max() > 0


def test_hippo_legs_nplr_has_the_legs_spectrum() -> None:
    n = 8
    q = np.sqrt(2 * np.arange(n) + 1.0)
    legs = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(n) + 1.0)  # S4 Eq. (2)
    lam, p, _ = hippo_legs_nplr(n)
    lam_f, p_f = np.concatenate([lam, lam.conj()]), np.concatenate([p, p.conj()])
    nplr = np.diag(lam_f) - np.outer(p_f, p_f.conj())
    got, want = np.sort_complex(np.linalg.eigvals(nplr)), np.sort_complex(np.linalg.eigvals(legs))
    np.testing.assert_allclose(got, want, atol=1e-8)
    assert np.all(lam.real == -0.5) and np.all(lam.imag > 0)
    assert np.allclose(s4d_init(4, "lin"), [-0.5, -0.5 + 1j * np.pi])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        S4Layer(4, mode="lstm")
    with pytest.raises(ValueError, match="backend"):
        S4Layer(4, kernel_backend="gpu")
    with pytest.raises(ValueError, match="even"):
        S4Layer(4, d_state=5)
