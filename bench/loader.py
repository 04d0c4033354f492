"""Samples/s of the training loader alone, against the training step and the GPU it must feed.

What is timed is the stage-1 training loader exactly as training builds it
(:class:`~pipeline.train.data.EpochLoader` over :class:`~pipeline.train.data.ECGDataset`
with :func:`~pipeline.train.loader_options.loader_options`): shards on disk read through memory maps
(``ShardStore``, page cache warm, as in every epoch after the first), the shuffled order,
one random crop per record, the tabular inputs (``x_cont``, ``x_mask``, ``x_cat`` of
bench/train_rate.py's width) and collation into tensors; on ``--device cuda`` also the
pinned host-to-GPU copy. Each configuration (batch size x crop x workers) runs for
``--seconds`` after its first batch, across epochs as training does (workers persist).

Shards: ``--records`` synthetic 10 s records (12 x 1000 float16 at 100 Hz) written in the
shard layout under a temporary directory, or ``--results DIR`` to read a run's
``DIR/shards/index.parquet``. Crops: 250 samples is the training crop of both the default
and the reference sizes (2.5 s at 100 Hz, PROTOCOL.md); 1000 is the whole record, the
longest input a shard holds (docs/scaling.md's L 1000 row). Batch sizes: the default (64)
and reference (32) sizes of bench/train_rate.py. Usage::

    python bench/loader.py                                  # 0 / 2 / 4 workers, both sizes
    python bench/loader.py --results results --crops 250 --device cuda

Printed per configuration: start-up (until the first batch: worker start, first reads),
samples/s (wall) and CPU ms per sample (training process and workers, start-up included:
the figure to read on a busy machine). In the same run, the pure training step of
bench/train_rate.py (stage 1, CPU, crop 250) and the GPU rate docs/scaling.md assumes for
the reference model (1,600-6,300 samples/s), and the ratios loader / step and loader / GPU.
How to read it: a ratio well above 1 means the loader keeps up; on CPU, loader / step
above 1 at 0 workers means workers cannot speed training there, they only take cores from
the training threads; on CUDA the worker count whose loader / GPU stays above 1 for the
upper estimate is what ``train.num_workers: auto`` should give.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_rate import CATS, N_CONT, SIZES
from bench.train_rate import measure as step_rate
from pipeline.data.ecg_store import ShardStore
from pipeline.data.tabular import TabularArrays
from pipeline.train.data import ECGDataset, EpochLoader, to_device
from pipeline.train.loader_options import loader_options

GPU_RATE = (1_600, 6_300)  # samples/s of the reference model on one GPU (docs/scaling.md)
RECORD = (12, 1000)  # 10 s at 100 Hz
STEP_CROP = 250  # bench/train_rate.py's crop


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (workers, once shut down)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def synthetic_shards(root: Path, n: int, shard_size: int) -> Path:
    """``n`` records in the shard layout (sizes and hashes in the index); the index path."""
    from tests.train_fixtures import _write_shards

    rng = np.random.default_rng(0)
    ecg = (0.3 * rng.standard_normal((n, *RECORD))).astype(np.float16)  # (N, 12, 1000)
    ids = 40_000_000 + np.arange(n, dtype=np.int64)
    return _write_shards(root / "shards", ids, ecg, size=shard_size)


def tabular(n: int) -> TabularArrays:
    """Inputs of train_rate's width (the real ones are the same arrays, indexed per record)."""
    rng = np.random.default_rng(1)
    return TabularArrays(
        x_cont=rng.standard_normal((n, N_CONT)).astype(np.float32),  # (N, F)
        x_mask=(rng.random((n, N_CONT)) > 0.5).astype(np.float32),
        x_cat=np.stack([rng.integers(0, c, n) for c in CATS], 1).astype(np.int64),  # (N, C)
    )


def measure_loader(
    dataset: ECGDataset, batch: int, workers: int, seconds: float, device: torch.device
) -> dict[str, float]:
    """Start-up, samples/s and CPU ms per sample of the training loader with ``workers``."""
    loader = EpochLoader(
        dataset, batch, shuffle=True, drop_last=True, options=loader_options(workers, device)
    )
    t0, c0 = time.monotonic(), _cpu()
    startup, steady_from, n, total, epoch = 0.0, 0.0, 0, 0, 0
    while not steady_from or time.monotonic() - steady_from < seconds:
        loader.set_epoch(epoch)
        for b in loader:
            if device.type == "cuda":
                to_device(b, device)
            total += len(b["ecg"])
            if not steady_from:  # the first batch: start-up
                startup = time.monotonic() - t0
                steady_from = time.monotonic()
                continue
            n += len(b["ecg"])
            if time.monotonic() - steady_from >= seconds:
                break
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.monotonic() - steady_from
    batch = loader.batch_size
    del loader  # shuts its workers down, so their CPU time is counted
    return {
        "batch": batch,  # at most the records there are
        "startup_s": startup,
        "samples_s": n / wall,
        "cpu_ms_per_sample": 1e3 * (_cpu() - c0) / max(total, 1),
    }


def _ratio(rate: float, ref: float | None) -> str:
    return f"{rate / ref:.2f}" if ref else "n/a"


def run(args: argparse.Namespace, index: Path) -> dict[str, Any]:
    device = torch.device(args.device)
    store = ShardStore(index)
    ids = store.ids if args.max_records <= 0 else store.ids[: args.max_records]
    tab = tabular(len(ids))
    print(f"loader: {len(ids)} records of {index}, device {device}, torch {torch.__version__}")
    steps: dict[str, float] = {}
    if args.step_steps > 0:
        torch.set_num_threads(args.threads or torch.get_num_threads())
        for size in args.sizes:
            steps[size] = step_rate(size, args.step_steps)["pretrain"]["samples_s"]
    rows = []
    print(
        "| size | batch | crop | workers | start-up s | samples/s | CPU ms / sample "
        "| / step | / GPU estimate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        for crop in args.crops:
            ds = ECGDataset(store, ids, crop_samples=crop, seed=0, tabular=tab)
            for workers in args.workers:
                r = measure_loader(ds, SIZES[size][1], workers, args.seconds, device)
                step = steps.get(size) if crop == STEP_CROP else None
                gpu = f"{r['samples_s'] / GPU_RATE[1]:.2f}-{r['samples_s'] / GPU_RATE[0]:.2f}"
                row = {"size": size, "crop": crop, "workers": workers, **r}
                rows.append(row | {"step_ratio": r["samples_s"] / step if step else None})
                print(
                    f"| {size} | {r['batch']:.0f} | {crop} | {workers} | {r['startup_s']:.2f} "
                    f"| {r['samples_s']:,.0f} | {r['cpu_ms_per_sample']:.3f} "
                    f"| {_ratio(r['samples_s'], step)} | {gpu} |",
                    flush=True,
                )
    threads = torch.get_num_threads()
    for size, rate in steps.items():
        print(
            f"pure training step (bench/train_rate.py, stage 1, {size}, batch "
            f"{SIZES[size][1]}, crop {STEP_CROP}, CPU, {threads} threads): {rate:,.1f} samples/s"
        )
    low, high = GPU_RATE
    print(f"GPU estimate (docs/scaling.md, reference model): {low:,}-{high:,} samples/s")
    return {"records": len(ids), "device": str(device), "rows": rows, "step_samples_s": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, help="read DIR/shards/index.parquet of a run")
    ap.add_argument("--records", type=int, default=4096, help="synthetic records to write")
    ap.add_argument("--shard-size", type=int, default=1024, help="records per synthetic shard")
    ap.add_argument("--max-records", type=int, default=0, help="use the first N (0: all)")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--crops", nargs="+", type=int, default=[250, 1000])
    ap.add_argument("--workers", nargs="+", type=int, default=[0, 2, 4])
    ap.add_argument("--seconds", type=float, default=3.0, help="timed per configuration")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--step-steps", type=int, default=3, help="train_rate steps per size (0: no step rate)"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the step (0: default)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    # more workers than cores is what the bench is for on a small machine
    warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        if args.results is not None:
            index = args.results / "shards" / "index.parquet"
        else:
            index = synthetic_shards(Path(tmp), args.records, args.shard_size)
        out = run(args, index)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
