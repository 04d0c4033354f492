"""Cauchy / Vandermonde backends against a literal float64 evaluation, plus gradients.

Every test runs on the device of the ``device`` fixture (tests/conftest.py): CPU by default,
``S4_TEST_DEVICE=cuda`` for a GPU (bench/gpu_check.sh); the literal reference sums run on the
CPU in float64 and the results are compared there. The keops backend runs on either device: on
CPU the first run compiles a few C++ kernels (about 5-10 s each), on CUDA a few GPU kernels, all
cached under ~/.cache/keops*. Shapes and dtypes (K = 6 Cauchy numerators, K = 2 Vandermonde
coefficients, float64) match tests/test_s4.py so the compiled kernels are shared.
"""

from __future__ import annotations

import cmath

import pytest
import torch

from pipeline.models.cauchy import (
    cauchy,
    cauchy_keops,
    cauchy_naive,
    cauchy_torch,
    keops_available,
    resolve_backend,
    roots_of_unity_half,
    vandermonde,
    vandermonde_keops,
    vandermonde_naive,
    vandermonde_torch,
)

CAUCHY = {
    "naive": cauchy_naive,
    "torch": cauchy_torch,
    "torch_chunk3": lambda v, z, w: cauchy_torch(v, z, w, chunk=3),
    "keops": cauchy_keops,
}
VANDERMONDE = {
    "naive": vandermonde_naive,
    "torch": vandermonde_torch,
    "torch_chunk3": lambda v, x, n: vandermonde_torch(v, x, n, chunk=3),
    "keops": vandermonde_keops,
}


def _problem(
    device: torch.device,
    seed: int = 0,
    b: int = 2,
    k: int = 6,
    n: int = 3,
    length: int = 11,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(v, z, w) drawn on the CPU (same values on every device), then moved to ``device``."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(b, k, n, dtype=torch.complex128, generator=g)
    w = torch.complex(
        -torch.rand(b, n, dtype=torch.float64, generator=g) - 0.1,
        3 * torch.randn(b, n, dtype=torch.float64, generator=g),
    )
    z = torch.randn(length, dtype=torch.complex128, generator=g) * 4
    return v.to(device), z.to(device), w.to(device)


def _direct_cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Literal sum over all N real-SSM states (both members of each conjugate pair)."""
    out = torch.zeros(v.shape[0], v.shape[1], z.shape[0], dtype=torch.complex128)
    for bi in range(v.shape[0]):
        for ki in range(v.shape[1]):
            for li, zl in enumerate(z.tolist()):
                total = 0j
                for vn, wn in zip(v[bi, ki].tolist(), w[bi].tolist(), strict=True):
                    total += vn / (zl - wn) + vn.conjugate() / (zl - wn.conjugate())
                out[bi, ki, li] = total
    return out


def _direct_vandermonde(v: torch.Tensor, x: torch.Tensor, length: int) -> torch.Tensor:
    out = torch.zeros(v.shape[0], v.shape[1], length, dtype=torch.float64)
    for bi in range(v.shape[0]):
        for ki in range(v.shape[1]):
            for ell in range(length):
                total = sum(
                    vn * cmath.exp(ell * xn)
                    for vn, xn in zip(v[bi, ki].tolist(), x[bi].tolist(), strict=True)
                )
                out[bi, ki, ell] = 2 * total.real
    return out


@pytest.mark.parametrize("name", CAUCHY)
def test_cauchy_backends_match_direct_float64(name: str, device: torch.device) -> None:
    v, z, w = _problem(device)
    # Also the points S4 actually uses: t = 2 (1 - omega) / (1 + omega) at odd-length roots.
    omega = roots_of_unity_half(11, torch.float64, device)
    for zz in (z, 2 * (1 - omega) / (1 + omega)):
        got = CAUCHY[name](v, zz, w)
        assert got.shape == (2, 6, zz.shape[0]) and got.device.type == device.type
        want = _direct_cauchy(v.cpu(), zz.cpu(), w.cpu())
        torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", VANDERMONDE)
def test_vandermonde_backends_match_direct_float64(name: str, device: torch.device) -> None:
    v, _, w = _problem(device, seed=1, k=2)
    x = 0.1 * w  # dt * A: stable exponents
    got = VANDERMONDE[name](v, x, 9)
    assert got.shape == (2, 2, 9) and got.dtype == torch.float64
    assert got.device.type == device.type
    want = _direct_vandermonde(v.cpu(), x.cpu(), 9)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-10)


def test_torch_gradcheck_float64(device: torch.device) -> None:
    v, z, w = _problem(device, b=1, k=6, n=2, length=5)
    v.requires_grad_(True)
    w.requires_grad_(True)
    # chunk=2 forces several checkpointed chunks, so the recompute-in-backward path is checked.
    assert torch.autograd.gradcheck(lambda v_, w_: cauchy_torch(v_, z, w_, chunk=2), (v, w))
    x = (0.1 * w).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v_, x_: vandermonde_torch(v_, x_, 5, chunk=2), (v, x))


def test_keops_gradients_match_torch(device: torch.device) -> None:
    """KeOps' symbolic gradients equal torch autograd's (full gradcheck is too slow on CPU)."""
    v, z, w = _problem(device, seed=2)
    grads = {}
    for name, fn in (("keops", cauchy_keops), ("torch", cauchy_torch)):
        vv, ww = v.clone().requires_grad_(True), w.clone().requires_grad_(True)
        out = fn(vv, z, ww)
        (out.real.square().sum() + out.imag.sum()).backward()
        grads[name] = (vv.grad, ww.grad)
    torch.testing.assert_close(grads["keops"], grads["torch"], rtol=1e-9, atol=1e-9)
    # Vandermonde: only the exponent gradient (the output is linear in v); each KeOps gradient
    # formula costs a compilation (~8 s on a cold cache).
    x = 0.1 * w
    for name, fn in (("keops", vandermonde_keops), ("torch", vandermonde_torch)):
        xx = x.clone().requires_grad_(True)
        fn(v[:, :2], xx, 9).square().sum().backward()
        grads[name] = (xx.grad,)
    torch.testing.assert_close(grads["keops"], grads["torch"], rtol=1e-9, atol=1e-9)


def test_dispatch_and_auto_backend(device: torch.device) -> None:
    v, z, w = _problem(device)
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    # auto is keops on CUDA exactly when pykeops imports, torch otherwise
    auto = "keops" if device.type == "cuda" and keops_available() else "torch"
    assert resolve_backend("auto", device) == auto
    torch.testing.assert_close(cauchy(v, z, w, "auto"), cauchy_naive(v, z, w))
    torch.testing.assert_close(
        vandermonde(v, 0.1 * w, 4, "torch"), vandermonde_naive(v, 0.1 * w, 4)
    )
    with pytest.raises(ValueError, match="unknown kernel backend"):
        resolve_backend("cuda-magic", torch.device("cpu"))
    with pytest.raises(ValueError, match="expected v"):
        cauchy_torch(v[0], z, w)
