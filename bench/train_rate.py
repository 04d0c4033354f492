"""Train and inference throughput of the pipeline's models at the default and reference sizes.

Times a few optimiser steps of the exact modules the training stages build (the S4 ECG
encoder from ``model.ecg_encoder``, the tabular MLP, the Barlow Twins projectors and
loss; for fine-tuning the encoder plus an MLP head with BCE over K labels), on random
inputs of the training shapes (B x 12 leads x crop samples). Data loading is left out:
shards are memory-mapped and cost little next to a step (see docs/scaling.md). Usage::

    python bench/train_rate.py                     # default (64 x 2) and reference (512 x 4)
    python bench/train_rate.py --steps 20 --sizes default

Prints samples/s (wall) and CPU seconds per sample (robust on a shared machine).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.losses import BarlowTwinsLoss
from pipeline.models import build_ecg_encoder, build_tabular_encoder
from pipeline.models.encoders import MLPHead
from pipeline.train.pretrain import JointEmbedding

# (ecg_encoder overrides, batch size, embed_dim, projector_hidden): config.yaml defaults
# and configs/mimic.yaml (the reference work's sizes).
SIZES = {
    "default": ({"d_model": 64, "n_layers": 2, "dropout": 0.1}, 64, 128, 256),
    "reference": ({"d_model": 512, "n_layers": 4, "dropout": 0.2}, 32, 512, 1024),
}
N_CONT, CATS, N_LABELS, CROP = 500, [3, 12], 1428, 250


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _batch(b: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "ecg": torch.randn(b, 12, CROP, generator=g),
        "x_cont": torch.randn(b, N_CONT, generator=g),
        "x_mask": (torch.rand(b, N_CONT, generator=g) > 0.5).float(),
        "x_cat": torch.stack([torch.randint(0, c, (b,), generator=g) for c in CATS], 1),
        "y": (torch.rand(b, N_LABELS, generator=g) > 0.97).float(),
    }


def _encoder(over: dict) -> nn.Module:
    cfg = {"name": "s4", "d_model": 64, "n_layers": 2, "d_state": 8, "mode": "dplr"}
    return build_ecg_encoder(cfg | {"bidirectional": True, "kernel_backend": "auto"} | over)


def _time(step, steps: int, b: int) -> dict[str, float]:
    for _ in range(2):  # warm-up: allocator, kernel caches
        step()
    t0, c0 = time.monotonic(), _cpu()
    for _ in range(steps):
        step()
    wall, cpu = time.monotonic() - t0, _cpu() - c0
    return {"samples_s": steps * b / wall, "cpu_ms_per_sample": 1e3 * cpu / (steps * b)}


def measure(size: str, steps: int) -> dict[str, dict[str, float]]:
    over, b, embed, hidden = SIZES[size]
    batch = _batch(b)
    tab = build_tabular_encoder(
        {"name": "mlp", "hidden": [128, 128, 128], "dropout": 0.1}, N_CONT, CATS
    )
    joint = JointEmbedding(_encoder(over), tab, embed, hidden)
    loss_fn, opt = BarlowTwinsLoss(0.005), torch.optim.AdamW(joint.parameters(), lr=1e-3)

    def pre_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(*joint(batch)).loss.backward()
        opt.step()

    enc = _encoder(over)
    head = MLPHead(enc.out_dim, [128], N_LABELS, 0.1)
    sup = nn.ModuleDict({"enc": enc, "head": head})
    sup_opt, bce = torch.optim.AdamW(sup.parameters(), lr=1e-3), nn.BCEWithLogitsLoss()

    def sup_step() -> None:
        sup_opt.zero_grad(set_to_none=True)
        bce(head(enc(batch["ecg"])), batch["y"]).backward()
        sup_opt.step()

    def infer() -> None:
        with torch.no_grad():
            head(enc(batch["ecg"]))

    out = {"pretrain": _time(pre_step, steps, b), "finetune": _time(sup_step, steps, b)}
    sup.eval()
    out["inference"] = _time(infer, steps, b)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default). On a busy machine use 1: OpenMP threads "
        "that wait for a descheduled sibling inflate CPU time several-fold",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, crop {CROP}")
    print("| size | batch | stage | samples/s (wall) | CPU ms / sample | peak RSS MB |")
    print("|---|---:|---|---:|---:|---:|")
    for size in args.sizes:
        for stage, r in measure(size, args.steps).items():
            print(
                f"| {size} | {SIZES[size][1]} | {stage} | {r['samples_s']:.1f} "
                f"| {r['cpu_ms_per_sample']:.1f} "
                f"| {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
