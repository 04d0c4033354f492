"""Train and inference throughput of the pipeline's models at the default and reference sizes.

Times a few optimiser steps of the exact modules the training stages build (the S4 ECG
encoder from ``model.ecg_encoder``, the tabular MLP, the Barlow Twins projectors and
loss; for fine-tuning the encoder plus an MLP head with BCE over K labels), on random
inputs of the training shapes (B x 12 leads x crop samples). Data loading is left out:
shards are memory-mapped and cost little next to a step (see docs/scaling.md). Usage::

    python bench/train_rate.py                     # default (64 x 2) and reference (512 x 4)
    python bench/train_rate.py --steps 20 --sizes default
    python bench/train_rate.py --precision fp32 bf16 [--device cuda]   # train.precision

Prints samples/s (wall) and CPU seconds per sample (robust on a shared machine). With
``--precision`` each step runs as the training loop runs it in that ``train.precision``
(autocast forward, fp16 loss scaling; :mod:`pipeline.train.precision`), and each row gets its
speed against fp32 measured in the same run (fp32 is added when not asked for): compare
precisions on an idle machine only.
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
from pipeline.train.precision import Precision, backward_step
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


def _batch(b: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {
        "ecg": torch.randn(b, 12, CROP, generator=g),
        "x_cont": torch.randn(b, N_CONT, generator=g),
        "x_mask": (torch.rand(b, N_CONT, generator=g) > 0.5).float(),
        "x_cat": torch.stack([torch.randint(0, c, (b,), generator=g) for c in CATS], 1),
        "y": (torch.rand(b, N_LABELS, generator=g) > 0.97).float(),
    }
    return {k: v.to(device) for k, v in batch.items()}


def _encoder(over: dict) -> nn.Module:
    cfg = {"name": "s4", "d_model": 64, "n_layers": 2, "d_state": 8, "mode": "dplr"}
    return build_ecg_encoder(cfg | {"bidirectional": True, "kernel_backend": "auto"} | over)


def _time(step, steps: int, b: int, device: torch.device) -> dict[str, float]:
    def sync() -> None:  # CUDA runs asynchronously: time finished work only
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):  # warm-up: allocator, kernel caches
        step()
    sync()
    t0, c0 = time.monotonic(), _cpu()
    for _ in range(steps):
        step()
    sync()
    wall, cpu = time.monotonic() - t0, _cpu() - c0
    return {"samples_s": steps * b / wall, "cpu_ms_per_sample": 1e3 * cpu / (steps * b)}


def measure(
    size: str,
    steps: int,
    precision: str = "fp32",
    device: torch.device | None = None,
    batch_size: int = 0,
) -> dict[str, dict[str, float]]:
    """Samples/s and CPU ms per sample of each stage's step in ``precision`` on ``device``
    (``batch_size`` 0: the size's own)."""
    device = device or torch.device("cpu")
    amp = Precision(precision, device.type)  # type: ignore[arg-type]  # argparse choices
    over, b, embed, hidden = SIZES[size]
    b = batch_size or b
    batch = _batch(b, device)
    tab = build_tabular_encoder(
        {"name": "mlp", "hidden": [128, 128, 128], "dropout": 0.1}, N_CONT, CATS
    )
    joint = JointEmbedding(_encoder(over), tab, embed, hidden).to(device)
    loss_fn, opt = BarlowTwinsLoss(0.005), torch.optim.AdamW(joint.parameters(), lr=1e-3)
    scaler = amp.new_scaler()

    def pre_step() -> None:  # as pipeline.train.engine.train_epoch runs it
        opt.zero_grad(set_to_none=True)
        with amp.autocast():
            loss = loss_fn(*joint(batch)).loss
        backward_step(loss, opt, scaler)

    enc = _encoder(over)
    head = MLPHead(enc.out_dim, [128], N_LABELS, 0.1)
    sup = nn.ModuleDict({"enc": enc, "head": head}).to(device)
    sup_opt, bce = torch.optim.AdamW(sup.parameters(), lr=1e-3), nn.BCEWithLogitsLoss()
    sup_scaler = amp.new_scaler()

    def sup_step() -> None:
        sup_opt.zero_grad(set_to_none=True)
        with amp.autocast():
            loss = bce(head(enc(batch["ecg"])).float(), batch["y"])
        backward_step(loss, sup_opt, sup_scaler)

    def infer() -> None:
        with torch.no_grad(), amp.autocast():
            head(enc(batch["ecg"]))

    out = {
        "pretrain": _time(pre_step, steps, b, device),
        "finetune": _time(sup_step, steps, b, device),
    }
    sup.eval()
    out["inference"] = _time(infer, steps, b, device)
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
    ap.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "bf16", "fp16"],
        help="train.precision values to time; fp32 is always timed first, as the baseline",
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=0, help="batch size (0: the size's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precisions = list(dict.fromkeys(["fp32", *args.precision]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, crop {CROP}, {device}")
    print(
        "| size | batch | precision | stage | samples/s (wall) | x fp32 | CPU ms / sample "
        "| peak RSS MB |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for size in args.sizes:
        base: dict[str, float] = {}
        for precision in precisions:
            torch.manual_seed(0)
            for stage, r in measure(size, args.steps, precision, device, args.batch).items():
                base.setdefault(stage, r["samples_s"])  # fp32 comes first
                print(
                    f"| {size} | {args.batch or SIZES[size][1]} | {precision} | {stage} "
                    f"| {r['samples_s']:.1f} | {r['samples_s'] / base[stage]:.2f} "
                    f"| {r['cpu_ms_per_sample']:.1f} "
                    f"| {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
