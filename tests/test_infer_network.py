"""FixedKernelS4 (the exported S4 layer with stored spectra) against the trained S4 layer."""

from __future__ import annotations

import pytest
import torch

from pipeline.infer.network import FixedKernelS4
from pipeline.models import S4Layer


@pytest.mark.parametrize(
    ("mode", "bidirectional", "length"),
    [("dplr", True, 250), ("dplr", True, 50), ("diag", False, 37)],
)
def test_fixed_kernel_layer_equals_the_s4_layer(
    mode: str, bidirectional: bool, length: int
) -> None:
    torch.manual_seed(0)
    layer = S4Layer(16, 8, mode=mode, bidirectional=bidirectional, kernel_backend="torch").eval()
    fixed = FixedKernelS4(layer, length).eval()
    u = torch.randn(3, length, 16)  # (B, L, H)
    with torch.no_grad():
        want = layer.forward_lh(u)
        torch.testing.assert_close(fixed.forward_lh(u), want, rtol=1e-5, atol=1e-5)
        ut = u.transpose(1, 2)  # (B, H, L)
        torch.testing.assert_close(fixed(ut), layer(ut), rtol=1e-5, atol=1e-5)
