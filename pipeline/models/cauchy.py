"""Cauchy and Vandermonde reductions for structured state-space (S4/S4D) kernels.

Both reductions sum over the N/2 states of a conjugate-symmetric SSM (Gu, Goel, Ré 2022,
"Efficiently Modeling Long Sequences with Structured State Spaces", Sec. 3.3 and App. C.3): a
real SSM with N states has eigenvalues in conjugate pairs, so only one state of each pair is stored
and its partner is folded into the same term.

* Cauchy (S4, DPLR mode)::

      out[b, k, l] = sum_n v[b, k, n] / (z[l] - w[b, n]) + conj(v[b, k, n]) / (z[l] - conj(w[b, n]))

* Vandermonde (S4D, diagonal mode; Gu et al. 2022, "On the Parameterization and Initialization of
  Diagonal State Space Models", Sec. 3)::

      out[b, k, l] = 2 Re sum_n v[b, k, n] exp(l x[b, n])

Backends:

* ``naive``: materialises the full (B, K, N, L) matrix in one go (reference for tests and the
  benchmark baseline).
* ``torch``: pure torch, chunked over L. The (B, N, chunk) matrix is shared by the K vectors
  (one batched matmul instead of K separate reductions) and each chunk is recomputed in the
  backward pass (activation checkpointing), so memory stays bounded for any L.
* ``keops``: pykeops LazyTensor reduction with real/imaginary parts split by hand; the (N x L)
  matrix is never materialised, and KeOps derives the gradient formulas symbolically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

BACKENDS = ("naive", "torch", "keops")

#: Elements of one (B, N, chunk) complex temporary in the chunked torch path. 2**22 complex64
#: values are 32 MiB; a chunk holds about six such temporaries at its peak (two Cauchy matrices
#: and their gradients), i.e. ~200 MiB whatever L is, while chunks stay long enough (>= 128
#: frequencies for B*N <= 32768, e.g. H = 512 channels x 64 states) to keep matmuls efficient.
CHUNK_ELEMENTS = 2**22


def _chunk_size(rows: int, length: int, budget: int) -> int:
    """Largest chunk of L such that a (rows, chunk) temporary fits in ``budget`` elements."""
    return max(1, min(length, budget // max(rows, 1)))


def _check(v: Tensor, w: Tensor) -> None:
    if v.dim() != 3 or w.dim() != 2 or v.shape[0] != w.shape[0] or v.shape[2] != w.shape[1]:
        raise ValueError(
            f"expected v (B, K, N) and w (B, N); got {tuple(v.shape)}, {tuple(w.shape)}"
        )


# ----------------------------------------------------------------------------------- Cauchy


def cauchy_naive(v: Tensor, z: Tensor, w: Tensor) -> Tensor:
    """Conjugate-symmetric Cauchy sum, materialising the (B, K, N, L) matrix.

    Args:
        v: (B, K, N) complex numerators.
        z: (L,) complex evaluation points.
        w: (B, N) complex poles.

    Returns:
        (B, K, L) complex.
    """
    _check(v, w)
    v4, w4 = v[..., None], w[:, None, :, None]  # (B, K, N, 1), (B, 1, N, 1)
    return (v4 / (z - w4) + v4.conj() / (z - w4.conj())).sum(dim=2)  # (B, K, L)


def _cauchy_block(v: Tensor, z: Tensor, w: Tensor) -> Tensor:
    r1 = 1.0 / (z - w[..., None])  # (B, N, c)
    r2 = 1.0 / (z - w.conj()[..., None])  # (B, N, c)
    return v @ r1 + v.conj() @ r2  # (B, K, c)


def _chunked(
    block: Callable[..., Tensor], args: tuple[Tensor, ...], z: Tensor, chunk: int
) -> Tensor:
    """Apply ``block(*args, z_chunk)`` over chunks of z, recomputing each chunk in backward."""
    grad = torch.is_grad_enabled() and any(a.requires_grad for a in args)
    outs = []
    for start in range(0, z.shape[0], chunk):
        zc = z[start : start + chunk]
        if grad:
            outs.append(checkpoint(block, *args, zc, use_reentrant=False))
        else:
            outs.append(block(*args, zc))
    return torch.cat(outs, dim=-1)


def cauchy_torch(v: Tensor, z: Tensor, w: Tensor, chunk: int | None = None) -> Tensor:
    """Conjugate-symmetric Cauchy sum in pure torch, chunked over L (see module docstring).

    Args:
        v: (B, K, N) complex numerators.
        z: (L,) complex evaluation points.
        w: (B, N) complex poles.
        chunk: frequencies per chunk; default keeps a (B, N, chunk) temporary under
            ``CHUNK_ELEMENTS`` elements.

    Returns:
        (B, K, L) complex.
    """
    _check(v, w)
    chunk = chunk or _chunk_size(w.numel(), z.shape[0], CHUNK_ELEMENTS)
    return _chunked(lambda v_, w_, zc: _cauchy_block(v_, zc, w_), (v, w), z, chunk)


def _keops_lazy(t: Tensor, axis: str) -> Any:
    """Wrap a real tensor as a KeOps LazyTensor indexed by i (axis="i") or j (axis="j")."""
    from pykeops.torch import LazyTensor  # imported lazily: importing pykeops probes CUDA

    if axis == "i":
        return LazyTensor(t.contiguous()[None, :, None, :])  # (1, L, 1, D)
    return LazyTensor(t.contiguous()[:, None, :, :])  # (B, 1, N, D)


def cauchy_keops(v: Tensor, z: Tensor, w: Tensor) -> Tensor:
    """Conjugate-symmetric Cauchy sum as a KeOps reduction (no (N x L) matrix in memory).

    KeOps kernels are real-valued, so with d1 = z - w, d2 = z - conj(w) the two terms are
    v / d1 + conj(v) / d2 written as real and imaginary parts of v = vr + i vi.

    Args:
        v: (B, K, N) complex numerators.
        z: (L,) complex evaluation points.
        w: (B, N) complex poles.

    Returns:
        (B, K, L) complex.
    """
    _check(v, w)
    k = v.shape[1]
    zr, zi = _keops_lazy(z.real[:, None], "i"), _keops_lazy(z.imag[:, None], "i")  # (1, L, 1, 1)
    wr, wi = _keops_lazy(w.real[..., None], "j"), _keops_lazy(w.imag[..., None], "j")  # (B,1,N,1)
    vt = torch.view_as_real(v.transpose(1, 2))  # (B, N, K, 2)
    vr, vi = _keops_lazy(vt[..., 0], "j"), _keops_lazy(vt[..., 1], "j")  # (B, 1, N, K)
    dr, d1i, d2i = zr - wr, zi - wi, zi + wi
    n1, n2 = 1.0 / (dr**2 + d1i**2), 1.0 / (dr**2 + d2i**2)
    a1, b1, a2, b2 = dr * n1, -d1i * n1, dr * n2, -d2i * n2  # 1/d1 = a1 + i b1, 1/d2 = a2 + i b2
    re = vr * (a1 + a2) + vi * (b2 - b1)
    im = vr * (b1 + b2) + vi * (a1 - a2)
    out = re.concat(im).sum(dim=2)  # (B, L, 2K)
    return torch.complex(out[..., :k], out[..., k:]).transpose(1, 2)  # (B, K, L)


# ------------------------------------------------------------------------------ Vandermonde


def vandermonde_naive(v: Tensor, x: Tensor, length: int) -> Tensor:
    """2 Re sum_n v exp(l x), materialising the (B, K, N, L) matrix.

    Args:
        v: (B, K, N) complex coefficients.
        x: (B, N) complex exponents (discretised eigenvalues dt * A).
        length: L.

    Returns:
        (B, K, L) real.
    """
    _check(v, x)
    ell = torch.arange(length, device=x.device, dtype=x.real.dtype)  # (L,)
    vand = torch.exp(x[:, None, :, None] * ell)  # (B, 1, N, L)
    return 2 * (v[..., None] * vand).sum(dim=2).real  # (B, K, L)


def _vandermonde_block(v: Tensor, x: Tensor, ell: Tensor) -> Tensor:
    return 2 * (v @ torch.exp(x[..., None] * ell)).real  # (B, K, c)


def vandermonde_torch(v: Tensor, x: Tensor, length: int, chunk: int | None = None) -> Tensor:
    """2 Re sum_n v exp(l x) in pure torch, chunked over L like ``cauchy_torch``."""
    _check(v, x)
    ell = torch.arange(length, device=x.device, dtype=x.real.dtype)  # (L,)
    chunk = chunk or _chunk_size(x.numel(), length, CHUNK_ELEMENTS)
    return _chunked(_vandermonde_block, (v, x), ell, chunk)


def vandermonde_keops(v: Tensor, x: Tensor, length: int) -> Tensor:
    """2 Re sum_n v exp(l x) as a KeOps reduction: exp(l xr) (vr cos(l xi) - vi sin(l xi))."""
    _check(v, x)
    ell = torch.arange(length, device=x.device, dtype=x.real.dtype)[:, None]  # (L, 1)
    li = _keops_lazy(ell, "i")  # (1, L, 1, 1)
    xr, xi = _keops_lazy(x.real[..., None], "j"), _keops_lazy(x.imag[..., None], "j")
    vt = torch.view_as_real(v.transpose(1, 2))  # (B, N, K, 2)
    vr, vi = _keops_lazy(vt[..., 0], "j"), _keops_lazy(vt[..., 1], "j")  # (B, 1, N, K)
    phase = li * xi
    out = ((li * xr).exp() * (vr * phase.cos() - vi * phase.sin())).sum(dim=2)  # (B, L, K)
    return 2 * out.transpose(1, 2)  # (B, K, L)


# --------------------------------------------------------------------------------- dispatch


def keops_available() -> bool:
    """True when pykeops imports (it compiles kernels on first use, on CPU or CUDA)."""
    try:
        import pykeops.torch  # noqa: F401
    except Exception:  # pykeops raises assorted errors when its toolchain is missing
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``auto`` to ``keops`` on CUDA when pykeops imports, else ``torch``."""
    if backend == "auto":
        return "keops" if device.type == "cuda" and keops_available() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; known: auto, {', '.join(BACKENDS)}")
    return backend


def cauchy(v: Tensor, z: Tensor, w: Tensor, backend: str = "torch") -> Tensor:
    """Dispatch the conjugate-symmetric Cauchy sum to a backend ("naive", "torch", "keops")."""
    fn = {"naive": cauchy_naive, "torch": cauchy_torch, "keops": cauchy_keops}
    return fn[resolve_backend(backend, v.device)](v, z, w)


def vandermonde(v: Tensor, x: Tensor, length: int, backend: str = "torch") -> Tensor:
    """Dispatch 2 Re sum_n v exp(l x) to a backend ("naive", "torch", "keops")."""
    fn = {"naive": vandermonde_naive, "torch": vandermonde_torch, "keops": vandermonde_keops}
    return fn[resolve_backend(backend, v.device)](v, x, length)


def roots_of_unity_half(length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """omega_k = exp(-2 pi i k / L) for k = 0..L//2: the frequencies ``irfft(n=L)`` needs."""
    k = torch.arange(length // 2 + 1, device=device, dtype=dtype)
    return torch.polar(torch.ones_like(k), -2 * math.pi * k / length)  # (L//2 + 1,)
