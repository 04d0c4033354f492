"""The exported S4 encoder (two-stage DFT, stored spectra, time-major) against the trained one."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from pipeline.infer.dft import cost, factored_dft
from pipeline.infer.network import FixedKernelS4, TimeMajorEncoder
from pipeline.models import ECGEncoder, S4Layer


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


@pytest.mark.parametrize(("length", "n2"), [(250, None), (250, 25), (50, 5), (37, None), (12, 3)])
def test_factored_dft_is_rfft_and_its_inverse(length: int, n2: int | None) -> None:
    f = factored_dft(length, n2)
    assert f.n >= 2 * length - 1 and f.n1 % 2 == 0 and length % f.n2 == 0
    stored = f.bins[f.bins >= 0]
    assert sorted(stored.tolist()) == list(range(f.n // 2 + 1))  # every bin exactly once
    g = f.bins.shape[0]
    u = torch.randn(length, 5, dtype=torch.float64)  # (L, columns)
    x1 = f.stage1.double() @ u.reshape(length // f.n2, -1)  # (N1, N2 * 5)
    x1 = x1.reshape(g, 2 * f.n2, -1)
    spec = torch.complex(f.fwd_re.double() @ x1, f.fwd_im.double() @ x1)  # (G, R, 5)
    bins = torch.from_numpy(f.bins)
    want = torch.fft.rfft(u, n=f.n, dim=0)  # (N/2 + 1, 5)
    torch.testing.assert_close(spec[bins >= 0], want[bins[bins >= 0]], rtol=0, atol=1e-4)
    y = torch.randn(f.n // 2 + 1, 5, dtype=torch.complex128)  # any spectrum
    y[0].imag, y[-1].imag = 0, 0  # DC and Nyquist of a real signal
    yg = torch.where((bins >= 0)[..., None], y[bins.clamp(min=0)], 0)  # (G, R, 5)
    v = f.inv_re.double() @ yg.real + f.inv_im.double() @ yg.imag  # (G, 2 N2, 5)
    got = (f.stage2.double() @ v.reshape(f.n1, -1)).reshape(length, -1)
    torch.testing.assert_close(got, torch.fft.irfft(y, n=f.n, dim=0)[:length], rtol=0, atol=1e-6)


def test_factored_dft_picks_the_cheapest_divisor_and_rejects_others() -> None:
    assert factored_dft(250).n2 == 10  # 50 x 10 points: ~4x fewer multiply-adds than dense
    assert cost(250, 10) * 4 < 4 * 250 * 251
    with pytest.raises(ValueError, match="does not divide"):
        factored_dft(250, 7)


def test_time_major_encoder_equals_the_encoder_in_torch_and_onnxruntime() -> None:
    torch.manual_seed(1)
    encoder = ECGEncoder(12, d_model=16, n_layers=2, kernel_backend="torch").eval()
    frozen = TimeMajorEncoder(encoder, 250).eval()
    x = torch.randn(3, 12, 250)
    with torch.no_grad():
        want = encoder(x)
        torch.testing.assert_close(frozen(x), want, rtol=1e-5, atol=1e-5)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            frozen, (x[:1],), buf, dynamo=False, opset_version=17,
            input_names=["x"], dynamic_axes={"x": {0: "b"}},
        )  # fmt: skip
    graph = onnx.load_from_string(buf.getvalue())
    assert {node.domain for node in graph.graph.node} == {""}  # standard operators only
    assert {"DFT", "Conv"}.isdisjoint(node.op_type for node in graph.graph.node)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})[0]  # batch 3 through a batch-1 trace
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
