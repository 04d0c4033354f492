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
  (one batched matmul instead of K separate reductions), and a hand-written backward recomputes
  it chunk by chunk instead of letting autograd keep every chunk, so memory stays bounded for
  any L (and complex elementwise autograd, slow on CPU, is avoided).
* ``keops``: pykeops LazyTensor reduction with real/imaginary parts split by hand; the (N x L)
  matrix is never materialised, and KeOps derives the gradient formulas symbolically.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pipeline.float32 import in_float32

BACKENDS = ("naive", "torch", "keops")

#: Elements of one (B, N, chunk) temporary in the chunked torch path. Forward and backward keep
#: up to about 15 real float32 buffers of that size alive per chunk (Cauchy parts, their sums,
#: the contractions with the upstream gradient): 2**21 elements -> 8 MiB each, so ~100-150 MiB
#: whatever L is, while chunks stay long enough (>= 128 frequencies for B*N <= 16384, e.g.
#: H = 512 channels x 32 complex states) for efficient batched matmuls.
CHUNK_ELEMENTS = 2**21


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


def _cauchy_parts(z: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Real parts of 1/(z - w) = a1 + i b1 and 1/(z - conj w) = a2 + i b2; (B, N, c) each.

    Real arithmetic: complex elementwise kernels are several times slower on CPU.
    """
    dr = z.real - w.real[..., None]  # (B, N, c)
    d1, d2 = z.imag - w.imag[..., None], z.imag + w.imag[..., None]  # (B, N, c)
    dr2 = dr.square()
    n1, n2 = d1.square().add_(dr2).reciprocal_(), d2.square().add_(dr2).reciprocal_()
    del dr2  # in-place updates below keep about six (B, N, c) buffers alive at once
    a1 = dr * n1
    return a1, d1.mul_(n1).neg_(), dr.mul_(n2), d2.mul_(n2).neg_()


def _rowdot(x: Tensor, y: Tensor) -> Tensor:
    """sum_l x[b, n, l] y[b, n, l] without a (B, N, c) product buffer; (B, N)."""
    return (x.unsqueeze(-2) @ y.unsqueeze(-1))[..., 0, 0]


class _CauchyChunked(torch.autograd.Function):
    """Chunked Cauchy sum with a hand-written chunked backward (nothing (N x L) is saved).

    With v = vr + i vi, out = v r1 + conj(v) r2 is
    re = vr (a1 + a2) + vi (b2 - b1), im = vr (b1 + b2) + vi (a1 - a2). Gradients follow
    torch's complex convention (dLoss = Re sum conj(grad) dx): with upstream G,
    grad_v = G conj(r1)^T + conj(G) r2^T and
    grad_w = sum_l conj(r1)^2 (v^H G) + r2^2 conj(v^T G) per state.
    """

    @staticmethod
    def forward(ctx: Any, v: Tensor, z: Tensor, w: Tensor, chunk: int) -> Tensor:
        ctx.save_for_backward(v, z, w)
        ctx.chunk = chunk
        vr, vi = v.real.contiguous(), v.imag.contiguous()  # (B, K, N)
        outs = []
        for start in range(0, z.shape[0], chunk):
            a1, b1, a2, b2 = _cauchy_parts(z[start : start + chunk], w)  # (B, N, c)
            re = vr @ (a1 + a2) + vi @ (b2 - b1)  # (B, K, c)
            im = vr @ (b1 + b2) + vi @ (a1 - a2)
            outs.append(torch.complex(re, im))
        return torch.cat(outs, dim=-1)  # (B, K, L)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None, None]:
        v, z, w = ctx.saved_tensors
        gv_re, gv_im = torch.zeros_like(v.real), torch.zeros_like(v.real)  # (B, K, N)
        gw_re, gw_im = torch.zeros_like(w.real), torch.zeros_like(w.real)  # (B, N)
        # contiguous: a transposed view of a complex tensor's real part has no unit stride,
        # and bmm would copy it matrix by matrix (B small copies per product)
        vrt = v.real.transpose(1, 2).contiguous()  # (B, N, K)
        vit = v.imag.transpose(1, 2).contiguous()
        for start in range(0, z.shape[0], ctx.chunk):
            g = grad[..., start : start + ctx.chunk]
            gr, gi = g.real.contiguous(), g.imag.contiguous()  # (B, K, c)
            a1, b1, a2, b2 = _cauchy_parts(z[start : start + ctx.chunk], w)  # (B, N, c)
            gv_re += gr @ (a1 + a2).transpose(1, 2) + gi @ (b1 + b2).transpose(1, 2)
            gv_im += gr @ (b2 - b1).transpose(1, 2) + gi @ (a1 - a2).transpose(1, 2)
            del g
            gg = torch.cat([gr, gi], -1)  # (B, K, 2c)
            pr, rt = (vrt @ gg).chunk(2, -1)  # vr^T gr, vr^T gi: (B, N, c)
            tq, qq = (vit @ gg).chunk(2, -1)  # vi^T gr, vi^T gi
            s1r, s1i, s2r, s2i = pr + qq, rt - tq, pr - qq, (rt + tq).neg_()  # v^H G, conj(v^T G)
            del gg, pr, rt, tq, qq
            c1r, c1i = a1.square() - b1.square(), -2 * a1 * b1  # conj(r1)^2
            gw_re += _rowdot(c1r, s1r) - _rowdot(c1i, s1i)
            gw_im += _rowdot(c1r, s1i) + _rowdot(c1i, s1r)
            del c1r, c1i
            c2r, c2i = a2.square() - b2.square(), 2 * a2 * b2  # r2^2
            gw_re += _rowdot(c2r, s2r) - _rowdot(c2i, s2i)
            gw_im += _rowdot(c2r, s2i) + _rowdot(c2i, s2r)
        return torch.complex(gv_re, gv_im), None, torch.complex(gw_re, gw_im), None


def cauchy_torch(v: Tensor, z: Tensor, w: Tensor, chunk: int | None = None) -> Tensor:
    """Conjugate-symmetric Cauchy sum in pure torch, chunked over L (see module docstring).

    Args:
        v: (B, K, N) complex numerators.
        z: (L,) complex evaluation points (treated as constants: no gradient).
        w: (B, N) complex poles.
        chunk: frequencies per chunk; default keeps a (B, N, chunk) temporary under
            ``CHUNK_ELEMENTS`` elements.

    Returns:
        (B, K, L) complex.
    """
    _check(v, w)
    chunk = chunk or _chunk_size(w.numel(), z.shape[0], CHUNK_ELEMENTS)
    return _CauchyChunked.apply(v, z.detach(), w, chunk)


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


class _VandermondeChunked(torch.autograd.Function):
    """Chunked 2 Re (v @ exp(x l)) with a hand-written chunked backward.

    With E = exp(x l) and real upstream G: grad_v = 2 G E^H and
    grad_x = 2 sum_l l conj(E) (v^H G) (torch's complex gradient convention).
    """

    @staticmethod
    def forward(ctx: Any, v: Tensor, x: Tensor, length: int, chunk: int) -> Tensor:
        ctx.save_for_backward(v, x)
        ctx.length, ctx.chunk = length, chunk
        outs = []
        for _, ell in _ell_chunks(length, chunk, x):
            outs.append(2 * (v @ torch.exp(x[..., None] * ell)).real)  # (B, K, c)
        return torch.cat(outs, dim=-1)  # (B, K, L)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        v, x = ctx.saved_tensors
        grad_v, grad_x = torch.zeros_like(v), torch.zeros_like(x)
        vh = v.conj().transpose(1, 2)  # (B, N, K)
        for start, ell in _ell_chunks(ctx.length, ctx.chunk, x):
            g = grad[..., start : start + ctx.chunk].to(v.dtype)  # (B, K, c)
            e_conj = torch.exp(x[..., None] * ell).conj()  # (B, N, c)
            grad_v += 2 * g @ e_conj.transpose(1, 2)
            grad_x += 2 * (ell * e_conj * (vh @ g)).sum(-1)
        return grad_v, grad_x, None, None


def _ell_chunks(length: int, chunk: int, like: Tensor) -> list[tuple[int, Tensor]]:
    """(start, positions) per chunk of 0..L-1, in the real dtype of ``like``."""
    ell = torch.arange(length, device=like.device, dtype=like.real.dtype)  # (L,)
    return [(start, ell[start : start + chunk]) for start in range(0, length, chunk)]


def vandermonde_torch(v: Tensor, x: Tensor, length: int, chunk: int | None = None) -> Tensor:
    """2 Re sum_n v exp(l x) in pure torch, chunked over L like ``cauchy_torch``."""
    _check(v, x)
    chunk = chunk or _chunk_size(x.numel(), length, CHUNK_ELEMENTS)
    return _VandermondeChunked.apply(v, x, length, chunk)


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


@in_float32  # sums over states at points near the poles: float32 under autocast
def cauchy(v: Tensor, z: Tensor, w: Tensor, backend: str = "torch") -> Tensor:
    """Dispatch the conjugate-symmetric Cauchy sum to a backend ("naive", "torch", "keops")."""
    fn = {"naive": cauchy_naive, "torch": cauchy_torch, "keops": cauchy_keops}
    return fn[resolve_backend(backend, v.device)](v, z, w)


@in_float32  # powers exp(l x) up to l = L: float32 under autocast
def vandermonde(v: Tensor, x: Tensor, length: int, backend: str = "torch") -> Tensor:
    """Dispatch 2 Re sum_n v exp(l x) to a backend ("naive", "torch", "keops")."""
    fn = {"naive": vandermonde_naive, "torch": vandermonde_torch, "keops": vandermonde_keops}
    return fn[resolve_backend(backend, v.device)](v, x, length)


def roots_of_unity_half(length: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """omega_k = exp(-2 pi i k / L) for k = 0..L//2: the frequencies ``irfft(n=L)`` needs."""
    k = torch.arange(length // 2 + 1, device=device, dtype=dtype)
    return torch.polar(torch.ones_like(k), -2 * math.pi * k / length)  # (L//2 + 1,)
