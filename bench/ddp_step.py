"""Data-parallel training steps on 2 processes against 1 (issue 24; bench/gpu_check.sh).

Stage 1's step (S4 encoder + projector, Barlow Twins over the gathered global batch, AdamW)
for a few steps on 2 ranks with half the batch each (:mod:`pipeline.train.distributed`:
NCCL on CUDA, gloo on CPU), then on 1 process with the whole batch; prints the per-step
losses of both, their largest relative difference and the median step time of each.

    python bench/ddp_step.py --device cuda          # needs 2 GPUs
    python bench/ddp_step.py --device cpu --tiny    # gloo, a CPU check of the same path
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from pipeline.losses import build_objective
from pipeline.models import Projector, build_ecg_encoder
from pipeline.parallel import current
from pipeline.train.distributed import launch, parallel_step

BatchT = dict[str, torch.Tensor]


class _Pairs(nn.Module):
    """Two crops of each record through one encoder and projector (stage 1's shape)."""

    def __init__(self, d_model: int, n_layers: int) -> None:
        super().__init__()
        cfg = {"name": "s4", "d_model": d_model, "n_layers": n_layers, "d_state": 8, "mode": "dplr"}
        cfg |= {"kernel_backend": "torch"}  # the check is of DDP, not of the kernels
        self.encoder = build_ecg_encoder({**cfg, "dropout": 0.0, "bidirectional": True})
        self.projector = Projector(self.encoder.out_dim, 2 * d_model, d_model)
        self.objective = build_objective("barlow_twins")

    def loss(self, batch: BatchT) -> torch.Tensor:
        z_a = self.projector(self.encoder(batch["a"]))  # (B, E)
        z_b = self.projector(self.encoder(batch["b"]))
        return self.objective(z_a, z_b).loss


def run_steps(args: dict[str, int], device_name: str) -> dict[str, list[float]]:
    """``args["steps"]`` steps on this process's part of each batch (all of it alone)."""
    ranks = current()
    device = ranks.device if ranks is not None else torch.device(device_name)
    rank, world = (ranks.rank, ranks.world) if ranks is not None else (0, 1)
    torch.manual_seed(0)
    model = _Pairs(args["d_model"], args["n_layers"]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step_fn(m: nn.Module, batch: BatchT) -> tuple[torch.Tensor, dict[str, float]]:
        assert isinstance(m, _Pairs)
        return m.loss(batch), {}

    step = parallel_step(model, step_fn)
    g = torch.Generator().manual_seed(1)
    b, part = args["batch"], args["batch"] // world
    losses, seconds = [], []
    for _ in range(args["steps"]):
        full = {k: torch.randn(b, 12, args["length"], generator=g) for k in ("a", "b")}
        batch = {k: v[rank * part : (rank + 1) * part].to(device) for k, v in full.items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = step(model, batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return {"loss": losses, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a small model and batch")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    opts = parser.parse_args(argv)
    if opts.device == "cuda" and torch.cuda.device_count() < 2:
        print(f"ddp_step: skipped, torch sees {torch.cuda.device_count()} CUDA device(s), needs 2")
        return 0
    size = (
        {"d_model": 16, "n_layers": 1, "batch": 8, "length": 100, "steps": 3}
        if opts.tiny
        else {"d_model": 256, "n_layers": 4, "batch": 64, "length": 250, "steps": 8}
    )
    # the ranks import this file as a module (a function of __main__ does not pickle)
    import ddp_step

    two = launch(ddp_step.run_steps, (size, opts.device), {}, 2, opts.device)
    one = run_steps(size, opts.device)
    diff = max(abs(a - b) / abs(b) for a, b in zip(two["loss"], one["loss"], strict=True))
    warm = slice(1, None)  # the first step pays for allocation and kernel selection
    out = {
        "device": opts.device,
        **size,
        "loss_2_processes": two["loss"],
        "loss_1_process": one["loss"],
        "max_relative_loss_difference": diff,
        "median_step_s_2_processes": statistics.median(two["seconds"][warm]),
        "median_step_s_1_process": statistics.median(one["seconds"][warm]),
    }
    print(json.dumps(out, indent=2))
    if opts.json is not None:
        opts.json.write_text(json.dumps(out, indent=2))
    ok = diff < (1e-3 if opts.device == "cuda" else 1e-5)  # TF32 / cuDNN on GPUs
    print(f"ddp_step: {'ok' if ok else 'MISMATCH'}, largest relative loss difference {diff:.2e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
