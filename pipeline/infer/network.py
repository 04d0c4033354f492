"""The inference network: a 10 s record in, crop-averaged probabilities and embedding out.

:class:`ExplainNet` wraps a ``method_labs`` model so that one call does what training's
evaluation did: cut the record into ``eval_crops`` centred non-overlapping crops, encode
each, apply both heads, average the sigmoid outputs (and the embeddings) over the crops.

:func:`frozen_copy` replaces the ECG encoder by :class:`TimeMajorEncoder`, the same map
on the time-major (L, B, H) layout with every S4 layer a :class:`FixedKernelS4`, whose
convolution kernel is computed once from the trained parameters for the fixed crop length
(eval mode: the kernel only depends on the weights) and applied in the frequency domain
through the two-stage real DFT of :mod:`pipeline.infer.dft`. That graph has only standard
operators (MatMul, Gemm, Mul; no FFT, no Cauchy kernel), so it exports to ONNX; the torch
kernel backend computes the kernel (the pykeops one is a GPU path and is never traced).

Speed (issue 24, item 7): at the reference size (4 x 512, L = 250, 4 crops per record) the
output mixing's Gemms are 4.2 GFLOP per record, the part no transform can remove; with
dense DFT matrices the convolution cost about as much again, with the two-stage DFT about
half a layer's Gemms (``bench/onnx_conv.py``), and ``bench/predict.py`` compares the
exported model with torch (figures and their CPU in docs/scaling.md).
"""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.data.preprocessing import crop_starts
from pipeline.infer.dft import factored_dft
from pipeline.models import S4Layer
from pipeline.models.encoders import ECGEncoder, S4Block
from pipeline.models.supervised import SupervisedModel

OUTPUTS = ("diagnoses", "labs", "embedding")


class FixedKernelS4(nn.Module):
    """An S4 layer at a fixed length L with its kernel's spectrum stored (eval mode).

    ``S4Layer.convolve`` multiplies the spectrum of the input by that of the (bidirectional)
    kernel and transforms back. Here the spectrum (skip term D included: it is the lag-0 tap)
    is precomputed from the trained parameters and both transforms are the two-stage
    products of :mod:`pipeline.infer.dft` (fixed matrices shared by all channels and
    records), applied from the left on the time-major (L, B, H) layout of
    :class:`TimeMajorEncoder`, where every stage is one matrix product with B H columns per
    row and all layout changes are free reshapes. The complex product with the spectrum is
    two element-wise Muls, of [Re X; Im X] by [Re K; Re K] and by [Im K; Im K], whose
    cross terms the two inverse matrices put together (in place of four Muls, a Sub and an
    Add). The GLU output mixing is two
    (L B, H) x (H, H) products with their biases (one Gemm each in ONNX, the gate's Sigmoid
    fused into it) instead of one 2H-wide product and a Split. Standard ONNX operators only
    (onnxruntime's DFT operator and a direct depthwise conv with 2L-1 taps were both measured
    ~10x slower than dense DFT matrices).
    """

    spec_re: Tensor
    spec_im: Tensor
    stage1: Tensor
    fwd: Tensor
    inv_a: Tensor
    inv_b: Tensor
    stage2: Tensor

    def __init__(self, layer: S4Layer, length: int, n2: int | None = None) -> None:
        super().__init__()
        dft = factored_dft(length, n2)
        self.length, self.n1, self.n2 = length, dft.n1, dft.n2
        with torch.no_grad():
            k = layer.kernel(length, backend="torch").double()  # (C_out, H, L)
            kk = F.pad(k[0], (0, dft.n - length))  # causal taps at lags 0..L-1: (H, N)
            if layer.bidirectional:  # lags -1..-(L-1) at the end of the circle; -L is never used
                kk[:, dft.n - length + 1 :] += k[1, :, : length - 1].flip(-1)
            kk[:, 0] += layer.d.detach().double()  # D u: the lag-0 tap
            spec = torch.fft.rfft(kk, n=dft.n).T  # (N/2 + 1, H)
            bins = torch.from_numpy(dft.bins)  # (G, R), -1: padding
            spec = torch.where((bins >= 0)[..., None], spec[bins.clamp(min=0)], 0)  # (G, R, H)
        for name, part in (("spec_re", spec.real), ("spec_im", spec.imag)):
            both = torch.cat([part, part], dim=1)[:, :, None]  # (G, 2R, 1, H)
            self.register_buffer(name, both.float().contiguous())
        self.register_buffer("stage1", dft.stage1)
        self.register_buffer("fwd", torch.cat([dft.fwd_re, dft.fwd_im], dim=1))  # (G, 2R, 2 N2)
        # Re Y = Re X Re K - Im X Im K, Im Y = Im X Re K + Re X Im K: inverse of Y from
        # [Re X; Im X] Re K (inv_a) and [Re X; Im X] Im K (inv_b)
        self.register_buffer("inv_a", torch.cat([dft.inv_re, dft.inv_im], dim=2))  # (G, 2 N2, 2R)
        self.register_buffer("inv_b", torch.cat([dft.inv_im, -dft.inv_re], dim=2))
        self.register_buffer("stage2", dft.stage2)
        self.activation = copy.deepcopy(layer.activation)
        h, mixing = layer.h, cast(nn.Conv1d, layer.output_linear[0])
        weight, bias = mixing.weight[..., 0], cast(Tensor, mixing.bias)  # (2H, H), (2H,)
        self.glu_value, self.glu_gate = nn.Linear(h, h), nn.Linear(h, h)
        with torch.no_grad():
            for i, lin in enumerate((self.glu_value, self.glu_gate)):  # GLU: first half * gate
                lin.weight.copy_(weight[i * h : (i + 1) * h])
                lin.bias.copy_(bias[i * h : (i + 1) * h])

    def forward_tm(self, u: Tensor) -> Tensor:
        """(L, B, H) -> (L, B, H), time-major; L must be the length the spectrum was built for."""
        length, h, n1, n2 = self.length, u.shape[-1], self.n1, self.n2
        x1 = self.stage1 @ u.reshape(length // n2, -1)  # (N1, N2 B H)
        g, rows = n1 // 2, self.fwd.shape[1]  # G groups of 2R rows
        x = (self.fwd @ x1.reshape(g, 2 * n2, -1)).reshape(g, rows, -1, h)  # [Re X; Im X]
        xa = (x * self.spec_re).reshape(g, rows, -1)  # (G, 2R, B H)
        xb = (x * self.spec_im).reshape(g, rows, -1)
        v = self.inv_a @ xa + self.inv_b @ xb  # (G, 2 N2, B H)
        z = self.activation((self.stage2 @ v.reshape(n1, -1)).reshape(-1, h))  # (L B, H)
        out = self.glu_value(z) * torch.sigmoid(self.glu_gate(z))  # (L B, H): 2-D, one Gemm each
        return out.reshape(length, -1, h)

    def forward_lh(self, u: Tensor) -> Tensor:
        """(B, L, H) -> (B, L, H), as ``S4Layer.forward_lh``."""
        return self.forward_tm(u.transpose(0, 1)).transpose(0, 1)

    def forward(self, u: Tensor) -> Tensor:
        """(B, H, L) -> (B, H, L), as ``S4Layer.forward``."""
        return self.forward_tm(u.permute(2, 0, 1)).permute(1, 2, 0)


class TimeMajorEncoder(nn.Module):
    """``ECGEncoder.forward`` with stored S4 kernels, computed on the (L, B, H) layout.

    Time-major activations let every transform stage of :class:`FixedKernelS4` be one matrix
    product over all records and channels; the input projection, the blocks' residual sums
    and LayerNorms and the mean over time are the encoder's own (post-norm, eval mode).
    """

    def __init__(self, encoder: ECGEncoder, length: int) -> None:
        super().__init__()
        self.input_proj = nn.Linear(encoder.input_proj.in_channels, encoder.out_dim)
        with torch.no_grad():
            self.input_proj.weight.copy_(encoder.input_proj.weight[..., 0])
            self.input_proj.bias.copy_(cast(Tensor, encoder.input_proj.bias))
        blocks = [cast(S4Block, block) for block in encoder.blocks]
        self.layers = nn.ModuleList(FixedKernelS4(cast(S4Layer, b.layer), length) for b in blocks)
        self.norms = nn.ModuleList(copy.deepcopy(b.norm) for b in blocks)
        self.length, self.out_dim = length, encoder.out_dim

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, L) -> (B, H)."""
        c = x.shape[1]
        h = self.input_proj(x.permute(2, 0, 1).reshape(-1, c))  # (L B, H)
        h = h.reshape(self.length, -1, self.out_dim)  # (L, B, H)
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = norm(h + cast(FixedKernelS4, layer).forward_tm(h))  # post-norm block
        return h.mean(dim=0)  # (B, H)


def frozen_copy(model: SupervisedModel, length: int) -> SupervisedModel:
    """A copy of ``model`` (eval mode) whose encoder uses stored S4 kernels of ``length``."""
    out = copy.deepcopy(model).eval()
    # duck-typed: ExplainNet only calls encoder(x) -> (B, H), which TimeMajorEncoder keeps
    out.encoder = cast(ECGEncoder, TimeMajorEncoder(out.encoder, length).eval())
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
