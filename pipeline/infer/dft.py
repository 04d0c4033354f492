"""A two-stage (Cooley-Tukey) real DFT of a zero-padded signal, as real matrices.

The exported S4 layer (:class:`pipeline.infer.network.FixedKernelS4`) convolves a length-L
signal with kernel taps at lags -(L-1)..(L-1) through the spectrum on a circle of
N = N1 * N2 >= 2L - 1 points. A dense real DFT costs ~2 L^2 multiply-adds per channel each
way; Cooley & Tukey (1965) split the index n = N2 n1 + n2 (N2 divides L) and the bin
k = k1 + N1 k2:

    X[k] = sum_{n2} W_N^{n2 k} X1[k mod N1, n2],
    X1[k1, n2] = sum_{n1} u[N2 n1 + n2] W_{N1}^{n1 k1},

with W_M = exp(-2 pi i / M). Stage 1 is one matrix (N1 x L / N2) applied to every n2 and
channel at once; stage 2, for each k1, maps the N2 values X1[k1, .] to the bins k = k1 (mod
N1). The input being real, X1[N1 - k1] = conj(X1[k1]): k1 and N1 - k1 form one group
(k1 = 0 and N1 / 2, both real, another), so stage 1 outputs N1 real rows, two per group,
and stage 2 is one real (bins x 2 N2) matrix per group producing the real and imaginary
parts of the group's bins k <= N / 2 (the rest of the spectrum is their conjugate).
The inverse for outputs t = N2 t1 + t2 < L runs the same two stages backwards. With
L = 250, N2 = 10, N1 = 50 this is ~58 k multiply-adds per channel for both ways (as
:class:`~pipeline.infer.network.FixedKernelS4` runs them) against ~251 k for dense DFT
matrices. Built in float64, stored as float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class FactoredDFT:
    """The stage matrices for a length ``length`` signal; G = N1 / 2 groups, R bins each.

    Attributes:
        length: L, the signal length.
        n2: N2 (divides L); n1: N1 (even), N = N1 * N2 >= 2L - 1.
        bins: (G, R) index of each stored bin k in 0..N/2, -1 where a group has fewer.
        stage1: (N1, L / N2): X1 rows ordered (group, real / imaginary part).
        fwd_re, fwd_im: (G, R, 2 N2): group rows (part, n2) -> Re / Im of the group's bins.
        inv_re, inv_im: (G, 2 N2, R): Re / Im of the bins -> the group's rows (part, t2).
        stage2: (L / N2, N1): group rows -> outputs t1 (t = N2 t1 + t2).
    """

    length: int
    n2: int
    n1: int
    bins: np.ndarray
    stage1: Tensor
    fwd_re: Tensor
    fwd_im: Tensor
    inv_re: Tensor
    inv_im: Tensor
    stage2: Tensor

    @property
    def n(self) -> int:
        return self.n1 * self.n2


def _group_bins(n1: int, n: int) -> list[list[tuple[int, int]]]:
    """Per group g: the (bin k <= N/2, residue r = k mod N1) pairs it produces."""
    groups: list[list[tuple[int, int]]] = [[] for _ in range(n1 // 2)]
    for k in range(n // 2 + 1):
        r = k % n1
        groups[0 if r in (0, n1 // 2) else min(r, n1 - r)].append((k, r))
    return groups


def _coefficients(g: int, r: int, n1: int) -> tuple[complex, complex]:
    """X1[r] = alpha * row0 + beta * row1 of group g (its two real rows)."""
    if g == 0:
        return (1.0, 0.0) if r == 0 else (0.0, 1.0)
    return (1.0, 1j) if r == g else (1.0, -1j)


def cost(length: int, n2: int) -> int:
    """Multiply-adds per channel of both transforms with this N2, as the S4 export runs them.

    Stage 1 and its inverse: 2 N1 L; the per-group stages: the forward (2R x 2 N2) and two
    inverse (2 N2 x 2R) matrices per group (the spectral product's cross terms).
    """
    n1 = math.ceil((2 * length - 1) / n2)
    n1 += n1 % 2
    groups, rows = n1 // 2, max(len(b) for b in _group_bins(n1, n1 * n2))
    return 2 * n1 * length + 3 * groups * (2 * rows) * (2 * n2)


def factored_dft(length: int, n2: int | None = None) -> FactoredDFT:
    """Stage matrices for length L; N2 defaults to the divisor of L with the least ``cost``."""
    if n2 is None:
        n2 = min(
            (d for d in range(1, length + 1) if length % d == 0), key=lambda d: cost(length, d)
        )
    if length % n2:
        raise ValueError(f"factored_dft: N2 = {n2} does not divide L = {length}")
    n1 = math.ceil((2 * length - 1) / n2)
    n1 += n1 % 2  # even: k1 and N1 - k1 pair up, k1 = 0 and N1 / 2 share a group
    n, m1, groups = n1 * n2, length // n2, _group_bins(n1, n1 * n2)
    rows = max(len(b) for b in groups)
    bins = np.full((n1 // 2, rows), -1)
    # stage 1: rows (group, part); group 0 holds X1[0] and X1[N1/2] (both real)
    ang1 = 2 * math.pi * np.outer(np.arange(n1 // 2), np.arange(m1)) / n1  # (G, M1)
    s1 = np.stack([np.cos(ang1), -np.sin(ang1)], axis=1)  # (G, 2, M1)
    s1[0, 1] = np.cos(math.pi * np.arange(m1))  # W_{N1}^{n1 N1/2} = (-1)^n1
    fwd = np.zeros((n1 // 2, 2, rows, 2, n2))  # [.., Re/Im, bin, part, n2]
    inv = np.zeros((n1 // 2, 2, n2, 2, rows))  # [.., part, t2, Re/Im, bin]
    t2 = np.arange(n2)
    for g, members in enumerate(groups):
        for j, (k, r) in enumerate(members):
            bins[g, j] = k
            alpha, beta = _coefficients(g, r, n1)
            w = np.exp(-2j * math.pi * t2 * k / n)  # W_N^{n2 k}: (N2,)
            for part, coef in enumerate((alpha, beta)):
                fwd[g, 0, j, part] = (w * coef).real
                fwd[g, 1, j, part] = (w * coef).imag
            # inverse: Z[r, t2] += e Y[k] with e = (w_k / N) W_N^{-t2 k}; group rows are
            # Re/Im of Z[g] + conj(Z[N1 - g]) (g >= 1), or Re Z[0], Re Z[N1/2] (g = 0)
            e = (1.0 if k in (0, n // 2) else 2.0) / n * np.exp(2j * math.pi * t2 * k / n)
            re_y, im_y = e.real, -e.imag  # Re(e Y) = e_r y_r - e_i y_i
            if g == 0:
                part = 0 if r == 0 else 1
                inv[g, part, :, 0, j] += re_y
                inv[g, part, :, 1, j] += im_y
            else:
                sign = 1.0 if r == g else -1.0  # Im(e Y) = e_i y_r + e_r y_i, conjugated
                inv[g, 0, :, 0, j] += re_y
                inv[g, 0, :, 1, j] += im_y
                inv[g, 1, :, 0, j] += sign * e.imag
                inv[g, 1, :, 1, j] += sign * e.real
    # stage 2 (inverse): y[t1, t2] = sum_g Re(W_{N1}^{-t1 g} V_g), V_0 = row0 + (-1)^t1 row1
    ang2 = 2 * math.pi * np.outer(np.arange(m1), np.arange(n1 // 2)) / n1  # (M1, G)
    s2 = np.stack([np.cos(ang2), -np.sin(ang2)], axis=2)  # (M1, G, 2)
    s2[:, 0, 1] = np.cos(math.pi * np.arange(m1))

    def f32(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).float()

    g_, r_ = n1 // 2, rows
    return FactoredDFT(
        length=length,
        n2=n2,
        n1=n1,
        bins=bins,
        stage1=f32(s1.reshape(n1, m1)),
        fwd_re=f32(fwd[:, 0].reshape(g_, r_, 2 * n2)),
        fwd_im=f32(fwd[:, 1].reshape(g_, r_, 2 * n2)),
        inv_re=f32(inv[..., 0, :].reshape(g_, 2 * n2, r_)),
        inv_im=f32(inv[..., 1, :].reshape(g_, 2 * n2, r_)),
        stage2=f32(s2.reshape(m1, n1)),
    )
