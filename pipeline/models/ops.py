"""Fast building blocks of the S4 layer: FFT convolution with a real-FFT backward, dropout.

Both are drop-in replacements with the same numerics as the plain autograd formulation:

* ``fft_conv`` computes the same circular convolution as ``irfft(rfft(u) * rfft(k))`` plus
  the skip term ``D u``, along dim 1 of a (B, L, H) tensor. Autograd through ``torch.fft``
  differentiates ``rfft`` with a full complex-to-complex transform of a zero-padded gradient
  (the largest single cost of a CPU train step at L = 250); the hand-written backward below
  uses real FFTs only: the gradients of a convolution are correlations, i.e. products with
  conjugated spectra.
* ``dropout`` on CPU draws one 16-bit random word per element (four per int64 draw) and keeps
  the element when its word is at least a threshold: element-wise Bernoulli masks as in
  ``nn.Dropout`` with the drop probability p rounded to a multiple of 2^-16 (0.1 ->
  0.100006) and the scale 1 / (1 - that rounded p), so E[y] = x exactly. Measured on one
  core for a (64, 250, 64) mask: 2.1 ms, against 8.1 ms with 32-bit words and several times
  more with ``bernoulli_`` on floats (no vectorised path on non-Intel CPUs); the mask is
  saved as bool (1 byte per element, not 4).
  On other devices ``F.dropout`` (a fused kernel there) is used as is.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.float32 import in_float32

_WORD = 2**16  # dropout draws one int16 word per element: p is rounded to a multiple of 1 / _WORD


def fast_fft_length(n: int) -> int:
    """Smallest even length >= n of the form 2^a, 3 * 2^a or 5 * 2^a (a >= 1).

    pocketfft (torch's CPU FFT) is several times slower on lengths with large odd factors:
    measured on one core, an rfft + irfft pair of (64, 64, n) costs 11.6 ms at n = 500
    (2^2 5^3) and 6.7 ms at 512, of (16, 64, n) 22.8 ms at 2000 and 12.2 ms at 2048, of
    (4, 64, n) 21.3 ms at 10000 and 12.9 ms at 10240 (``bench/s4.py`` times the whole step).
    """
    best = 1 << max(n - 1, 1).bit_length()  # smallest power of two >= max(n, 2)
    for odd in (3, 5):
        size = 2 * odd
        while size < n:
            size *= 2
        best = min(best, size)
    return best


def _spectrum(x: Tensor, n: int) -> Tensor:
    """rfft over L of a (B, L, H) tensor zero-padded to n; (B, H, n // 2 + 1).

    The transposing copy into the padded buffer is the only layout copy: ``rfft`` along a
    non-last dim (or with ``n > L``) would make its own padded and permuted copies.
    """
    b, length, h = x.shape
    buf = x.new_empty(b, h, n)
    buf[..., length:].zero_()
    buf[..., :length].copy_(x.transpose(1, 2))
    return torch.fft.rfft(buf)


def _skip_add(y: Tensor, u: Tensor, d: Tensor) -> Tensor:
    """y[..., :L] (B, H, n) transposed plus d * u, written contiguously as (B, L, H)."""
    view = y[..., : u.shape[1]].transpose(1, 2)
    return torch.addcmul(view, u, d, out=torch.empty_like(u, memory_format=torch.contiguous_format))


class _FFTConv(torch.autograd.Function):
    """y[b, t, h] = sum_s u[b, s, h] kk[h, (t - s) mod n] + d[h] u[b, t, h], t < L.

    Backward (kk real of length n, u zero-padded to n, G = rfft(g padded), U = rfft(u)):
    grad_u = irfft(G conj(K))[:L] + d g (a correlation with the kernel) and
    grad_kk = irfft(sum_b G conj(U)) (a correlation with the input), whose lag-0 tap is
    sum_{b,t} g u = grad_d. U is saved from the forward instead of u (one padded transpose
    and real FFT less in the backward, for (n/2 + 1) complex values per L real ones).
    """

    @staticmethod
    def forward(ctx: Any, u: Tensor, kk: Tensor, d: Tensor) -> Tensor:
        n = kk.shape[-1]
        kf = torch.fft.rfft(kk)  # (H, F)
        uf = _spectrum(u, n)  # (B, H, F)
        y = torch.fft.irfft(uf * kf, n=n)  # (B, H, n)
        ctx.save_for_backward(uf, kf, d)
        return _skip_add(y, u, d)  # (B, L, H)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        uf, kf, d = ctx.saved_tensors
        n = 2 * (kf.shape[-1] - 1)  # even by construction (checked in fft_conv)
        gf = _spectrum(grad, n)  # (B, H, F)
        grad_u = grad_kk = grad_d = None
        if ctx.needs_input_grad[0]:
            grad_u = _skip_add(torch.fft.irfft(gf * kf.conj(), n=n), grad, d)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # sum_b G conj(U) = conj(sum_b conj(G) U): conjugating G in place avoids a copy.
            cross = gf.conj_physical_().mul_(uf).sum(0).conj()  # (H, F)
            taps = torch.fft.irfft(cross, n=n)  # (H, n)
            grad_kk = taps if ctx.needs_input_grad[1] else None
            grad_d = taps[:, 0] if ctx.needs_input_grad[2] else None
        return grad_u, grad_kk, grad_d


@in_float32  # sums over L lags; torch.fft has no bfloat16 on CPU
def fft_conv(u: Tensor, kk: Tensor, d: Tensor) -> Tensor:
    """Circular convolution along dim 1 plus a skip term, for a (B, L, H) input.

    Args:
        u: (B, L, H) real input.
        kk: (H, n) real kernel taps on a circle of even length n >= 2L (lag j at position
            j mod n, so negative lags sit at the end); n >= 2L makes it a linear convolution.
        d: (H,) skip (lag-0) coefficient applied exactly, outside the FFT.

    Returns:
        (B, L, H), contiguous.
    """
    n = kk.shape[-1]
    if n % 2 or n < 2 * u.shape[1] or kk.shape[0] != u.shape[2]:
        raise ValueError(
            f"fft_conv: need kk (H, even n >= 2L); got {tuple(kk.shape)} for u {tuple(u.shape)}"
        )
    return _FFTConv.apply(u, kk, d)


class _MaskedScale(torch.autograd.Function):
    """x * mask * scale with a bool mask saved for the backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, mask: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return x.mul(scale).mul_(mask)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return grad.mul(ctx.scale).mul_(mask), None, None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Element-wise dropout as ``F.dropout``, p rounded to a multiple of 2^-16 (module doc)."""
    if not training or p == 0.0:
        return x
    threshold = round(p * _WORD)  # words below it are dropped: P(drop) = threshold / 2^16
    if x.device.type != "cpu" or not 0 < threshold < _WORD:
        return F.dropout(x, p, training)
    mask = _keep_mask(x.shape, threshold, x.device)
    return _MaskedScale.apply(x, mask, _WORD / (_WORD - threshold))


def _keep_mask(shape: torch.Size, threshold: int, device: torch.device) -> Tensor:
    """Bool mask of ``shape``, each element False with probability threshold / 2^16, independently.

    Each int64 draw, uniform over all 2^64 values (to 2^-64), gives four int16 words, each
    uniform over [-2^15, 2^15); int64 ``random_`` costs about as much per draw as int32
    ``random_``, so this draws a quarter as many as one word per element would.
    """
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words = words.random_(-(2**63), 2**63 - 1).view(torch.int16)  # (4 * ceil(n / 4),)
    return (words[:n] >= threshold - _WORD // 2).view(shape)


def reuse_freed_memory(trim_threshold: int = 2**30) -> bool:
    """Make glibc keep freed large blocks for reuse instead of unmapping them (Linux only).

    glibc serves every block above its mmap threshold (adaptive, at most 32 MiB) with a fresh
    mmap and unmaps it on free. From L of a few thousand samples on, every activation of a
    train step is such a block, so each step page-faults all of its memory again (seconds of
    system time per step at L = 5000). With mmap switched off (M_MMAP_MAX = 0) and a high
    M_TRIM_THRESHOLD, freed blocks stay in the heap and the next step reuses them; the
    process keeps up to ``trim_threshold`` bytes of free heap. The environment equivalent,
    for a process not yet started, is ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824``.

    Returns:
        True when both settings were applied (False without glibc, e.g. macOS or musl).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(
        libc.mallopt(m_trim_threshold, trim_threshold)
    )
