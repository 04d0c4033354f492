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
from pipeline.models.s4 import pointwise
from pipeline.models.supervised import SupervisedModel

OUTPUTS = ("diagnoses", "labs", "embedding")


def _dft_matrices(length: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Real DFT of a length-L signal zero-padded to N = 2L, and its inverse for t < L.

    Returns ``fr``, ``fi`` (F, L) with fr @ u, fi @ u = Re, Im of rfft(u, N) along u's first
    dim (F = L + 1 bins) and ``ir``, ``ii`` (L, F) with ir @ Re + ii @ Im = irfft(., N)[:L];
    built in float64.
    """
    n, bins = 2 * length, length + 1
    f = torch.arange(bins, dtype=torch.float64)
    t = torch.arange(length, dtype=torch.float64)
    ang = 2 * math.pi * f[:, None] * t[None, :] / n  # (F, L)
    weight = torch.full((1, bins), 2.0, dtype=torch.float64)
    weight[0, 0] = weight[0, -1] = 1.0  # DC and Nyquist appear once in the full spectrum
    fr, fi = torch.cos(ang), -torch.sin(ang)  # (F, L)
    ir, ii = torch.cos(ang.T) * weight / n, -torch.sin(ang.T) * weight / n  # (L, F)
    return fr.float(), fi.float(), ir.float(), ii.float()


class FixedKernelS4(nn.Module):
    """An S4 layer at a fixed length L with its kernel's spectrum stored (eval mode).

    ``S4Layer.convolve`` multiplies rfft(u, 2L) by the spectrum of the (bidirectional)
    kernel and transforms back. Here the spectrum is precomputed from the trained
    parameters and both transforms are products with fixed DFT matrices shared by all
    channels, applied from the left on the (B, L, H) layout the encoder keeps between
    blocks: large GEMMs (N = H), no transposes, no Split/Concat of real and imaginary parts,
    and the output mixing as a MatMul on the same layout. Standard ONNX operators only
    (onnxruntime's DFT operator and a direct depthwise conv with 2L-1 taps were both
    measured ~10x slower; a two-stage Cooley-Tukey DFT in matrices, a third of the
    multiply-adds, ran no faster in onnxruntime because its second stage is many small GEMMs).
    """

    kr: Tensor
    ki: Tensor
    fr: Tensor
    fi: Tensor
    ir: Tensor
    ii: Tensor
    d: Tensor

    def __init__(self, layer: S4Layer, length: int) -> None:
        super().__init__()
        with torch.no_grad():
            k = layer.kernel(length, backend="torch").double()  # (C_out, H, L)
            kk = F.pad(k[0], (0, length))  # causal taps at lags 0..L-1, as in convolve
            if layer.bidirectional:
                kk = kk + F.pad(k[1].flip(-1), (length, 0))  # lags -1..-L
            spec = torch.fft.rfft(kk, n=2 * length).T  # (F, H)
        self.register_buffer("kr", spec.real.float().contiguous())
        self.register_buffer("ki", spec.imag.float().contiguous())
        for name, matrix in zip(("fr", "fi", "ir", "ii"), _dft_matrices(length), strict=True):
            self.register_buffer(name, matrix)
        self.register_buffer("d", layer.d.detach().clone())  # (H,)
        self.activation = copy.deepcopy(layer.activation)
        self.output_linear = copy.deepcopy(layer.output_linear)

    def forward_lh(self, u: Tensor) -> Tensor:
        """(B, L, H) -> (B, L, H); L must be the length the spectrum was built for."""
        xr, xi = self.fr @ u, self.fi @ u  # (B, F, H)
        yr = xr * self.kr - xi * self.ki  # (B, F, H)
        yi = xr * self.ki + xi * self.kr
        y = self.ir @ yr + self.ii @ yi + self.d * u  # (B, L, H)
        z = pointwise(self.output_linear[0], self.activation(y))  # (B, L, 2H)
        return F.glu(z, dim=-1)  # (B, L, H)

    def forward(self, u: Tensor) -> Tensor:
        """(B, H, L) -> (B, H, L), as ``S4Layer.forward``."""
        return self.forward_lh(u.transpose(1, 2)).transpose(1, 2)


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
