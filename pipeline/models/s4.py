"""S4 layer: DPLR (S4) and diagonal (S4D) state-space convolution kernels.

References:
    Gu, Goel, Ré (2022), "Efficiently Modeling Long Sequences with Structured State Spaces"
    (ICLR) -- DPLR state matrix A = Lambda - P Q^*, HiPPO-LegS in normal-plus-low-rank form,
    bilinear discretisation, truncated generating function at the roots of unity via Cauchy
    kernels and the Woodbury identity (Algorithm 1, Lemmas C.2-C.3).
    Gu, Gupta, Goel, Ré (2022), "On the Parameterization and Initialization of Diagonal State
    Space Models" (NeurIPS) -- S4D: diagonal A, S4D-Lin / S4D-Inv initialisation, zero-order
    hold, Vandermonde kernel.

Conventions: N = d_state real states, stored as N/2 complex states (conjugate pairs); H =
channels; C_out = 2 kernels when bidirectional (forward and backward in time), else 1.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.float32 import in_float32
from pipeline.models.cauchy import cauchy, resolve_backend, roots_of_unity_half, vandermonde
from pipeline.models.ops import dropout, fast_fft_length, fft_conv

MODES = ("dplr", "diag")
#: Kernel lengths kept per layer by the eval-mode cache (training crops, evaluation crops).
KERNEL_CACHE_SIZE = 4
DIAG_INITS = ("lin", "inv")


def hippo_legs_nplr(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HiPPO-LegS as normal plus rank one, in the eigenbasis of the normal part.

    HiPPO-LegS (S4 paper Eq. 2): A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0
    above the diagonal; B_n = sqrt(2n+1). With P_n = sqrt(n + 1/2), A + P P^T = -I/2 + S with S
    skew-symmetric (S4 Sec. 3.2 / Cor. 3.1), so A = V (Lambda - p p^*) V^* with p = V^* P.

    Args:
        n: number of real states N (even).

    Returns:
        Lambda, p, b of shape (N/2,) complex128: the eigenvalues with positive imaginary part
        (one per conjugate pair) and the matching rows of V^* P and V^* B.
    """
    if n % 2:
        raise ValueError(f"d_state must be even for conjugate pairs, got {n}")
    q = np.sqrt(2 * np.arange(n) + 1.0)  # (N,)
    a = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(n) + 1.0)  # (N, N)
    p = np.sqrt(np.arange(n) + 0.5)  # (N,)
    skew = a + np.outer(p, p) + 0.5 * np.eye(n)  # (N, N), S^T = -S
    # i*S is Hermitian: eigh gives a unitary V and real mu with S v = -i mu v.
    mu, v = np.linalg.eigh(1j * skew)
    lam = -0.5 - 1j * mu  # (N,)
    keep = np.argsort(mu)[: n // 2]  # mu < 0 <=> Im(Lambda) > 0
    vh = v[:, keep].conj().T  # (N/2, N)
    return lam[keep], vh @ p, vh @ q


def s4d_init(n: int, kind: str) -> np.ndarray:
    """S4D-Lin (-1/2 + i pi k) or S4D-Inv (-1/2 + i N/pi (N/(2k+1) - 1)) eigenvalues, (N/2,)."""
    k = np.arange(n // 2)
    if kind == "lin":
        return -0.5 + 1j * math.pi * k
    if kind == "inv":
        return -0.5 + 1j * n / math.pi * (n / (2 * k + 1) - 1)
    raise ValueError(f"unknown S4D init {kind!r}; known: {', '.join(DIAG_INITS)}")


def pointwise(conv: nn.Module, x: Tensor) -> Tensor:
    """Apply a Conv1d(C_in, C_out, 1) as a linear map over the last dim of (B, L, C_in).

    One (B L, C_in) x (C_in, C_out) matrix product, with no transposes of the activations;
    the weight keeps its (C_out, C_in, 1) Conv1d layout (a view is used), so checkpoints load.
    """
    conv = cast(nn.Conv1d, conv)
    return F.linear(x, conv.weight[..., 0], conv.bias)


def _param(x: np.ndarray | Tensor) -> nn.Parameter:
    """Complex array -> real parameter (..., 2), so that .double()/.float() keep it valid."""
    t = torch.as_tensor(x, dtype=torch.complex128)
    return nn.Parameter(torch.view_as_real(t).float().contiguous())


class S4Layer(nn.Module):
    """Bidirectional S4 / S4D convolution + skip D, GELU, dropout and a GLU output mixing.

    Forward (B, H, L) -> (B, H, L) for any L; ``forward_lh`` is the same map on the (B, L, H)
    layout the encoder keeps between blocks (no transposes). The SSM part is linear
    time-invariant and per-channel; the pointwise H -> 2H linear map + GLU mixes channels (S4
    paper, App. D.2). Its weights keep the Conv1d(H, 2H, 1) layout of earlier versions, so
    saved models and optimiser states load unchanged; it is applied as one matrix product.

    In eval mode, when no SSM parameter needs a gradient, the convolution taps are cached per
    length and reused while the parameters are unchanged (compared by value on every call, so
    in-place edits, ``load_state_dict`` or swapped parameters never see stale taps); ``train()``
    empties the cache.

    Args:
        d_model: channels H.
        d_state: real state size N (even); N/2 complex states are stored.
        mode: "dplr" (S4, HiPPO-LegS, bilinear, Cauchy) or "diag" (S4D, ZOH, Vandermonde).
        bidirectional: add a second kernel run backwards in time (non-causal).
        dropout: dropout after the activation.
        kernel_backend: "auto", "torch", "keops" or "naive" (see ``pipeline.models.cauchy``).
        dt_min, dt_max: range of the log-uniform initial step size (per channel).
        diag_init: "lin" (S4D-Lin) or "inv" (S4D-Inv); used in "diag" mode only.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 8,
        mode: str = "dplr",
        bidirectional: bool = True,
        dropout: float = 0.0,
        kernel_backend: str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        diag_init: str = "lin",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown S4 mode {mode!r}; known: {', '.join(MODES)}")
        resolve_backend(kernel_backend, torch.device("cpu"))  # validate the name early
        self.h, self.n, self.mode = d_model, d_state, mode
        self.bidirectional, self.kernel_backend = bidirectional, kernel_backend
        self.c_out = 2 if bidirectional else 1
        h, n2 = d_model, d_state // 2

        if mode == "dplr":
            lam, p, b = hippo_legs_nplr(d_state)
        else:
            lam, p, b = s4d_init(d_state, diag_init), None, np.ones(n2)
        # Re(Lambda) = -exp(.) keeps the SSM stable throughout training.
        self.log_neg_re = nn.Parameter(torch.log(torch.tensor(-lam.real)).float().repeat(h, 1))
        self.im = nn.Parameter(torch.tensor(lam.imag).float().repeat(h, 1))  # (H, N/2)
        self.b = _param(np.tile(b, (h, 1)))  # (H, N/2, 2)
        if p is not None:
            self.p = _param(np.tile(p, (h, 1)))  # (H, N/2, 2), rank-1 term P = Q
        c = torch.randn(self.c_out, h, n2, dtype=torch.complex128)  # var 1 over re + im
        self.c = _param(c)  # (C_out, H, N/2, 2): the SSM output matrix itself (not C-tilde)
        log_dt = torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)  # (H,)
        self.d = nn.Parameter(torch.randn(h))  # (H,)

        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Sequential(nn.Conv1d(h, 2 * h, kernel_size=1), nn.GLU(dim=1))
        self._taps_cache: dict[tuple[int, str], Tensor] = {}
        self._taps_params: Tensor | None = None  # parameter values the cached taps belong to

    # --------------------------------------------------------------------------- kernels

    def ssm_params(self) -> dict[str, Tensor]:
        """Continuous-time parameters as complex tensors (conjugate-pair halves)."""
        out = {
            "dt": self.log_dt.exp(),  # (H,)
            "lam": torch.complex(-self.log_neg_re.exp(), self.im),  # (H, N/2)
            "b": torch.view_as_complex(self.b),  # (H, N/2)
            "c": torch.view_as_complex(self.c),  # (C_out, H, N/2)
        }
        if self.mode == "dplr":
            out["p"] = torch.view_as_complex(self.p)  # (H, N/2)
        return out

    @in_float32  # poles, powers of Abar and Cauchy sums: float32 under autocast
    def kernel(self, length: int, backend: str | None = None) -> Tensor:
        """Convolution kernel K_j = C Abar^j Bbar, j < length; (C_out, H, L) real."""
        backend = resolve_backend(backend or self.kernel_backend, self.log_dt.device)
        if self.mode == "diag":
            return self._kernel_diag(length, backend)
        return self._kernel_dplr(length, backend)

    def _kernel_diag(self, length: int, backend: str) -> Tensor:
        """S4D with zero-order hold: Abar = exp(dt A), Bbar = (exp(dt A) - 1) / A * B."""
        s = self.ssm_params()
        dta = s["dt"][:, None] * s["lam"]  # (H, N/2)
        v = s["c"] * (s["b"] * (dta.exp() - 1) / s["lam"])  # (C_out, H, N/2)
        return vandermonde(v.transpose(0, 1), dta, length, backend).transpose(0, 1)  # (C, H, L)

    def _kernel_dplr(self, length: int, backend: str) -> Tensor:
        """S4 (Algorithm 1): generating function at the roots of unity, then inverse FFT.

        With the bilinear transform and t = 2 (1 - w) / (1 + w), the length-M truncated
        generating function at an M-th root of unity w is
        (2 dt / (1 + w)) C~ (t - dt A)^{-1} B with C~ = C (I - Abar^M) (S4 Lemma C.2), and
        (t - dt A)^{-1} for A = Lambda - P P^* follows from Woodbury with four Cauchy sums.
        M is L rounded up to an odd number so that w = -1 (where t is infinite) never occurs.
        """
        s = self.ssm_params()
        dt, lam, p, b = s["dt"], s["lam"], s["p"], s["b"]
        m = length + 1 - length % 2  # odd number of taps >= L
        c_tilde = self._c_tilde(s, m)  # (C_out, H, N/2)
        v = torch.cat(
            [c_tilde * b, c_tilde * p, (p.conj() * b)[None], (p.conj() * p)[None]]
        ).transpose(0, 1)  # (H, 2 C_out + 2, N/2)
        omega = roots_of_unity_half(m, dt.dtype, dt.device)  # (M//2 + 1,)
        t = 2 * (1 - omega) / (1 + omega)  # (M//2 + 1,)
        r = cauchy(v, t, dt[:, None] * lam, backend)  # (H, 2 C_out + 2, M//2 + 1)
        co = self.c_out
        k00, k01, k10, k11 = r[:, :co], r[:, co : 2 * co], r[:, -2:-1], r[:, -1:]
        dtc = dt[:, None, None]  # (H, 1, 1)
        k_hat = (2 * dtc / (1 + omega)) * (k00 - dtc * k01 * k10 / (1 + dtc * k11))
        return torch.fft.irfft(k_hat, n=m)[..., :length].transpose(0, 1)  # (C_out, H, L)

    def _c_tilde(self, s: dict[str, Tensor], m: int) -> Tensor:
        """C~ = C (I - Abar^M) on the full N-dim complex state; returns the first halves.

        Abar is dense (N x N per channel) because of the low-rank term. C Abar^M is computed by
        binary powering: log2(M) squarings of Abar applied to the row vectors C.
        """
        abar = self.discrete_dplr(s)  # (H, N, N)
        c_full = torch.cat([s["c"], s["c"].conj()], dim=-1)  # (C_out, H, N)
        c_pow, e = c_full, m
        while e:
            if e & 1:
                c_pow = torch.einsum("chn,hnm->chm", c_pow, abar)
            e >>= 1
            if e:
                abar = abar @ abar
        return (c_full - c_pow)[..., : self.n // 2]

    @staticmethod
    def discrete_dplr(s: dict[str, Tensor]) -> Tensor:
        """Bilinear Abar = (I - dt/2 A)^{-1} (I + dt/2 A) = 2 (I - dt/2 A)^{-1} - I, (H, N, N).

        With A = diag(Lambda) - P P^*, I - dt/2 A = diag(d) + (dt/2) P P^* is inverted in closed
        form by Sherman-Morrison (no batched LU, whose complex backward is slow on CPU).
        """
        lam = torch.cat([s["lam"], s["lam"].conj()], dim=-1)  # (H, N)
        p = torch.cat([s["p"], s["p"].conj()], dim=-1)  # (H, N)
        half = (s["dt"] / 2)[:, None]  # (H, 1)
        inv_d = 1.0 / (1 - half * lam)  # (H, N)
        left, right = inv_d * p, (p.conj() * inv_d)  # D^-1 P, P^* D^-1: (H, N)
        denom = 1 + half * (p.conj() * inv_d * p).sum(-1, keepdim=True)  # (H, 1)
        m_inv = (
            torch.diag_embed(inv_d)
            - (half / denom)[..., None] * left[..., :, None] * right[..., None, :]
        )  # (H, N, N)
        eye = torch.eye(lam.shape[-1], dtype=lam.dtype, device=lam.device)
        return 2 * m_inv - eye

    # --------------------------------------------------------------------------- forward

    def taps(self, length: int) -> Tensor:
        """Kernel taps on a circle of n = fast_fft_length(2 L) points for ``fft_conv``; (H, n).

        Causal taps sit at lags 0..L-1; the backward kernel's taps at lags -1..-L (circular
        positions n-1..n-L), so it sees strictly future samples and lag 0 is counted once.
        """
        n = fast_fft_length(2 * length)  # >= 2L: no wrap-around; taps between the lags are 0
        k = self.kernel(length)  # (C_out, H, L)
        kk = F.pad(k[0], (0, n - length))  # (H, n)
        if self.bidirectional:
            kk = kk + F.pad(k[1].flip(-1), (n - length, 0))
        return kk

    def _cached_taps(self, length: int) -> Tensor:
        """``taps(length)``, from the eval-mode cache when it is valid (see class docstring)."""
        ssm = [p for name, p in self.named_parameters() if name != "d" and "." not in name]
        if self.training or (torch.is_grad_enabled() and any(p.requires_grad for p in ssm)):
            return self.taps(length)
        with torch.no_grad():
            values = torch.cat([p.detach().reshape(-1) for p in ssm])
            if self._taps_params is None or not (
                self._taps_params.shape == values.shape
                and self._taps_params.dtype == values.dtype
                and self._taps_params.device == values.device
                and torch.equal(self._taps_params, values)
            ):
                self._taps_cache, self._taps_params = {}, values
            key = (length, resolve_backend(self.kernel_backend, values.device))
            if key not in self._taps_cache:
                if len(self._taps_cache) >= KERNEL_CACHE_SIZE:
                    self._taps_cache.pop(next(iter(self._taps_cache)))
                self._taps_cache[key] = self.taps(length)
            return self._taps_cache[key]

    def train(self, mode: bool = True) -> S4Layer:
        """Switch mode and drop cached taps (the next eval pass recomputes them)."""
        self._taps_cache, self._taps_params = {}, None
        return super().train(mode)

    @in_float32  # FFT convolution over L lags: u upcast, float32 out under autocast
    def convolve_lh(self, u: Tensor) -> Tensor:
        """SSM part only on the (B, L, H) layout: y = K * u (+ backward kernel) + D u."""
        return fft_conv(u, self._cached_taps(u.shape[1]).to(u.dtype), self.d)

    def convolve(self, u: Tensor) -> Tensor:
        """SSM part only: y = K * u (+ backward kernel) + D u; (B, H, L) -> (B, H, L)."""
        return self.convolve_lh(u.transpose(1, 2)).transpose(1, 2)

    def forward_lh(self, u: Tensor) -> Tensor:
        """(B, L, H) -> (B, L, H)."""
        y = dropout(self.activation(self.convolve_lh(u)), self.dropout.p, self.training)
        return F.glu(pointwise(self.output_linear[0], y), dim=-1)  # (B, L, H)

    def forward(self, u: Tensor) -> Tensor:
        """(B, H, L) -> (B, H, L)."""
        return self.forward_lh(u.transpose(1, 2)).transpose(1, 2)
