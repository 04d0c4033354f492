"""The inference network: a 10 s record in, crop-averaged probabilities and embedding out.

:class:`ExplainNet` wraps a ``method_labs`` model so that one call does what training's
evaluation did: cut the record into ``eval_crops`` centred non-overlapping crops, encode
each, apply both heads, average the sigmoid outputs (and the embeddings) over the crops.

:func:`frozen_copy` replaces every S4 layer by :class:`FixedKernelS4`, whose convolution
kernel is computed once from the trained parameters for the fixed crop length (eval mode:
the kernel only depends on the weights) and applied in the frequency domain with fixed
DFT matrices. That graph has only standard operators (MatMul, no FFT, no Cauchy kernel),
so it exports to ONNX; the torch kernel backend computes the kernel (the pykeops one is
a GPU path and is never traced).
"""

from __future__ import annotations

import copy
import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.data.preprocessing import crop_starts
from pipeline.models import S4Layer
from pipeline.models.supervised import SupervisedModel

OUTPUTS = ("diagnoses", "labs", "embedding")


def _dft_matrices(length: int) -> tuple[Tensor, Tensor]:
    """Real DFT of a length-L signal zero-padded to N = 2L, and its inverse for t < L.

    Returns ``fwd`` (L, 2F) with u @ fwd = [Re, Im] of rfft(u, N) (F = L + 1 bins) and
    ``inv`` (2F, L) with [Re, Im] @ inv = irfft(., N)[:L]; built in float64.
    """
    n, bins = 2 * length, length + 1
    t = torch.arange(length, dtype=torch.float64)
    f = torch.arange(bins, dtype=torch.float64)
    ang = 2 * math.pi * t[:, None] * f[None, :] / n  # (L, F)
    fwd = torch.cat([torch.cos(ang), -torch.sin(ang)], dim=1)  # (L, 2F)
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
    weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once in the full spectrum
    inv = torch.cat([torch.cos(ang.T) * weight, -torch.sin(ang.T) * weight]) / n  # (2F, L)
    return fwd.float(), inv.float()


class FixedKernelS4(nn.Module):
    """An S4 layer at a fixed length L with its kernel's spectrum stored (eval mode).

    ``S4Layer.convolve`` multiplies rfft(u, 2L) by the spectrum of the (bidirectional)
    kernel and transforms back. Here the spectrum is precomputed from the trained
    parameters and both transforms are matrix products with fixed DFT matrices shared by
    all channels: one large GEMM each, standard ONNX operators only (onnxruntime's DFT
    operator and a direct depthwise conv with 2L-1 taps were both measured ~10x slower).
    """

    kr: Tensor
    ki: Tensor
    fwd: Tensor
    inv: Tensor
    d: Tensor

    def __init__(self, layer: S4Layer, length: int) -> None:
        super().__init__()
        with torch.no_grad():
            k = layer.kernel(length, backend="torch").double()  # (C_out, H, L)
            kk = F.pad(k[0], (0, length))  # causal taps at lags 0..L-1, as in convolve
            if layer.bidirectional:
                kk = kk + F.pad(k[1].flip(-1), (length, 0))  # lags -1..-L
            spec = torch.fft.rfft(kk, n=2 * length)  # (H, L + 1)
        self.register_buffer("kr", spec.real.float().contiguous())
        self.register_buffer("ki", spec.imag.float().contiguous())
        fwd, inv = _dft_matrices(length)
        self.register_buffer("fwd", fwd)
        self.register_buffer("inv", inv)
        self.register_buffer("d", layer.d.detach().clone()[:, None])  # (H, 1)
        self.bins = length + 1
        self.activation = copy.deepcopy(layer.activation)
        self.output_linear = copy.deepcopy(layer.output_linear)

    def forward(self, u: Tensor) -> Tensor:
        """(B, H, L) -> (B, H, L); L must be the length the spectrum was built for."""
        x = u @ self.fwd  # (B, H, 2F)
        xr, xi = x[..., : self.bins], x[..., self.bins :]
        y = torch.cat([xr * self.kr - xi * self.ki, xr * self.ki + xi * self.kr], dim=-1)
        y = y @ self.inv + self.d * u  # (B, H, L)
        return self.output_linear(self.activation(y))

    def forward_lh(self, u: Tensor) -> Tensor:
        """(B, L, H) -> (B, L, H): the layout the encoder passes between blocks (as S4Layer)."""
        return self.forward(u.transpose(1, 2)).transpose(1, 2)


def frozen_copy(model: SupervisedModel, length: int) -> SupervisedModel:
    """A copy of ``model`` (eval mode) whose S4 layers use stored kernels of ``length``."""
    out = copy.deepcopy(model).eval()
    for block in out.encoder.blocks:
        block.layer = FixedKernelS4(cast(S4Layer, block.layer), length)
    return out


class ExplainNet(nn.Module):
    """(B, 12, n_samples) float32 -> diagnoses (B, K_dx), labs (B, K_lab), embedding (B, H).

    Args:
        model: a method_labs model (diagnosis head and lab head on one ECG encoder).
        n_samples: record length after resampling (1000: 10 s at 100 Hz).
        crop_samples, eval_crops: the crops of training's evaluation.
    """

    def __init__(
        self, model: SupervisedModel, n_samples: int, crop_samples: int, eval_crops: int
    ) -> None:
        super().__init__()
        if model.diagnosis_head is None or model.tab_encoder is not None:
            raise ValueError("ExplainNet needs an ECG-only model with a diagnosis head")
        self.encoder = model.encoder
        self.diagnosis_head = model.diagnosis_head
        self.lab_head = model.head
        self.n_samples, self.crop = n_samples, crop_samples
        self.starts = [int(s) for s in crop_starts(n_samples, crop_samples, eval_crops)]

    def forward(self, ecg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Crop, encode, both heads, average over crops."""
        b, n = ecg.shape[0], len(self.starts)
        crops = torch.stack([ecg[:, :, s : s + self.crop] for s in self.starts], dim=1)
        h = self.encoder(crops.reshape(b * n, ecg.shape[1], self.crop))  # (B * n, H)
        dx = torch.sigmoid(self.diagnosis_head(h)).reshape(b, n, -1).mean(dim=1)
        labs = torch.sigmoid(self.lab_head(h)).reshape(b, n, -1).mean(dim=1)
        return dx, labs, h.reshape(b, n, -1).mean(dim=1)
