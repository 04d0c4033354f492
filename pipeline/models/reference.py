"""The encoder forward as plain autograd in the (B, H, L) layout (before issue 11).

This is the formulation the fast path replaced, written over the same modules and weights:
channels-first activations with a transpose around every LayerNorm, the pointwise maps as
Conv1d(k=1), the FFT convolution differentiated by autograd through ``torch.fft``, ``nn.Dropout``
masks, and the SSM kernel recomputed on every call. It is kept for two uses only:
tests check that the fast path computes the same function (outputs and gradients), and
``bench/s4.py`` times it as the same-run "before" baseline.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.models.encoders import ECGEncoder, S4Block
from pipeline.models.s4 import S4Layer


def layer_forward(layer: S4Layer, u: Tensor) -> Tensor:
    """S4Layer on (B, H, L): kernel, FFT convolution of length 2L, GELU, dropout, Conv1d + GLU."""
    length = u.shape[-1]
    k = layer.kernel(length).to(u.dtype)  # (C_out, H, L)
    kk = F.pad(k[0], (0, length))  # (H, 2L)
    if layer.bidirectional:
        kk = kk + F.pad(k[1].flip(-1), (length, 0))
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * length) * torch.fft.rfft(kk), n=2 * length)
    y = y[..., :length] + layer.d[:, None] * u  # (B, H, L)
    y = F.dropout(layer.activation(y), layer.dropout.p, layer.training)
    return layer.output_linear(y)  # Conv1d(H, 2H, 1) + GLU over channels: (B, H, L)


def block_forward(block: S4Block, x: Tensor) -> Tensor:
    """Post-norm residual S4 block on (B, H, L)."""
    y = x + F.dropout(layer_forward(block.layer, x), block.dropout.p, block.training)
    return block.norm(y.transpose(1, 2)).transpose(1, 2)  # (B, H, L)


def encoder_forward(encoder: ECGEncoder, x: Tensor) -> Tensor:
    """ECGEncoder on (B, in_channels, L) -> (B, d_model)."""
    h = encoder.input_proj(x)  # (B, H, L)
    for block in encoder.blocks:
        h = block_forward(cast(S4Block, block), h)
    return h.mean(dim=-1)
