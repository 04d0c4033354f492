"""Benchmark: one exported S4 layer's convolution in onnxruntime, dense vs two-stage DFT.

At one layer of the reference size (L = 250, 4 crops of one record, H = 512; configs/
mimic.yaml) on the time-major layout of the export, 1 thread, CPU seconds per call (the
calling thread's, so a loaded machine inflates them less than wall time):

- ``glu``: the layer's output mixing, two (L B, H) x (H, H) Gemms and the gate (the part
  no transform change can remove; the baseline of the ratios);
- ``dense``: rfft / irfft as dense real DFT matrices (F x L and L x F, F = L + 1), the
  complex product as four Muls, a Sub and two Adds (the export before issue 24);
- ``two-stage``: :class:`pipeline.infer.network.FixedKernelS4`'s transforms (the default
  N2 of :func:`pipeline.infer.dft.factored_dft`, and ``--n2`` alternatives).

Usage: ``python bench/onnx_conv.py [--repeats 40] [--n2 5 10 25]``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
L, B, H = 250, 4, 512


def modules(n2s: list[int]) -> dict[str, object]:
    import torch
    from torch import nn

    from pipeline.infer.network import FixedKernelS4
    from pipeline.models import S4Layer

    class Glu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(H, H), nn.Linear(H, H)

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            z = u.reshape(-1, H)
            return self.a(z) * torch.sigmoid(self.b(z))

    class Dense(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            f = L + 1
            self.fr, self.fi = torch.randn(f, L), torch.randn(f, L)
            self.ir, self.ii = torch.randn(L, f), torch.randn(L, f)
            self.kr, self.ki = torch.randn(f, 1, H), torch.randn(f, 1, H)

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            x = u.reshape(L, -1)  # (L, B H)
            xr, xi = (self.fr @ x).reshape(L + 1, -1, H), (self.fi @ x).reshape(L + 1, -1, H)
            yr, yi = xr * self.kr - xi * self.ki, xr * self.ki + xi * self.kr
            return self.ir @ yr.reshape(L + 1, -1) + self.ii @ yi.reshape(L + 1, -1)

    class TwoStage(nn.Module):  # FixedKernelS4.forward_tm up to the activation
        def __init__(self, n2: int | None) -> None:
            super().__init__()
            layer = S4Layer(H, 8, kernel_backend="torch").eval()
            self.s4 = FixedKernelS4(layer, L, n2)

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            s, g = self.s4, self.s4.n1 // 2
            rows = s.fwd.shape[1]
            x1 = s.stage1 @ u.reshape(L // s.n2, -1)
            x = (s.fwd @ x1.reshape(g, 2 * s.n2, -1)).reshape(g, rows, -1, H)
            xa, xb = (x * s.spec_re).reshape(g, rows, -1), (x * s.spec_im).reshape(g, rows, -1)
            return s.stage2 @ (s.inv_a @ xa + s.inv_b @ xb).reshape(s.n1, -1)

    out: dict[str, object] = {"glu": Glu(), "dense": Dense(), "two-stage": TwoStage(None)}
    for n2 in n2s:
        out[f"two-stage N2={n2}"] = TwoStage(n2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--n2", type=int, nargs="*", default=[5, 25])
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    from cpu_info import cpu_model

    torch.manual_seed(0)
    u = torch.randn(L, B, H)
    sessions = {}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    for name, module in modules(args.n2).items():
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (u,), buf, dynamo=False, opset_version=17)  # type: ignore[arg-type]
        sessions[name] = ort.InferenceSession(
            buf.getvalue(), opts, providers=["CPUExecutionProvider"]
        )
    x = u.numpy()
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.repeats):  # interleaved: load changes hit every variant alike
        for name, s in sessions.items():
            feed = {s.get_inputs()[0].name: x}
            t0 = time.thread_time()
            s.run(None, feed)
            cpu[name].append(time.thread_time() - t0)
    print(f"CPU: {cpu_model()}; onnxruntime {ort.__version__}; 1 thread, one layer, L {L}, "
          f"{B} crops, H {H}; ratios against glu, this run")  # fmt: skip
    base = float(np.median(cpu["glu"]))
    print(f"{'variant':20s} {'CPU ms (median)':>16s} {'min':>8s} {'x glu':>7s}")
    for name, t in cpu.items():
        med = float(np.median(t))
        print(f"{name:20s} {med * 1e3:16.2f} {min(t) * 1e3:8.2f} {med / base:7.2f}")


if __name__ == "__main__":
    main()
