"""Benchmark the S4 kernel backends: train-step time and peak memory vs a naive kernel.

Each (backend, L, N) configuration runs in its own subprocess. Time: median of the timed steps
after warm-up. Memory: peak of one extra step above what is live before it (parameters,
optimiser state, inputs): on CUDA with ``torch.cuda.max_memory_allocated``; on CPU as the peak
resident set (VmHWM, reset through /proc/self/clear_refs) with glibc switched to mmap for large
blocks, so that the RSS follows live tensors instead of the allocator's free lists.
Backends: ``naive`` materialises the (K, H, N/2, L) Cauchy tensor (the baseline), ``torch``
is the chunked pure-torch path, ``keops`` the pykeops reduction. Ratios are computed against
``naive`` measured in the same run. On CPU a worker gets an address-space limit
(--mem-limit-gb) so that an exploding configuration fails with "OOM" instead of swapping the
machine; a failed train step is retried with half the batch down to --min-batch.

Usage:
    python bench/s4.py                 # reference sizes: d_model 512, 4 layers
    python bench/s4.py --small         # d_model 128 (finishes in minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB


def _cpu_memory_mode() -> None:
    """Make the RSS follow live tensors, then reset the peak-RSS counter (VmHWM).

    By default glibc raises its mmap threshold after the first large free and keeps freed
    blocks in the heap, so the RSS would measure the allocator's history. Called after the
    timed steps, because mmap-per-allocation slows the steps down.
    """
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
    libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration; returns median seconds and peak extra memory in MiB."""
    import torch

    sys.path.insert(0, str(ROOT))
    from pipeline.models import ECGEncoder, S4Layer

    torch.manual_seed(0)
    dev = torch.device(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    if cfg["what"] == "kernel":
        layer = S4Layer(cfg["d_model"], cfg["d_state"], mode=cfg["mode"], kernel_backend="torch")
        layer = layer.to(dev)

        def step(length: int = cfg["length"]) -> None:
            k = layer.kernel(length, backend=cfg["backend"])  # (C_out, H, L)
            k.square().sum().backward()
    else:
        enc = ECGEncoder(
            12,
            cfg["d_model"],
            cfg["n_layers"],
            cfg["d_state"],
            cfg["mode"],
            True,
            0.2,
            cfg["backend"],
        ).to(dev)
        head = torch.nn.Linear(cfg["d_model"], 20).to(dev)
        opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-3)
        x = torch.randn(cfg["batch"], 12, cfg["length"], device=dev)
        y = (torch.rand(cfg["batch"], 20, device=dev) < 0.2).float()

        def step(length: int = cfg["length"]) -> None:
            logits = head(enc(x[..., :length]))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step(16)  # loads the libraries (MKL, FFT, KeOps modules) and creates the optimiser state
    for _ in range(cfg["warmup"]):  # includes KeOps compilation on first use
        step()
    sync()
    times = []
    for _ in range(cfg["steps"]):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    # Memory: one more step, measured as the peak above what is live before it (parameters,
    # optimiser state, inputs), i.e. the activations and kernel temporaries of a step.
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        _cpu_memory_mode()
        base = _status_mb("VmRSS")
        step()
        peak = _status_mb("VmHWM") - base
    return {"seconds": statistics.median(times), "mem_mb": max(peak, 0.0)}


def run_config(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run a worker subprocess; {"error": ...} on OOM, timeout or crash."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(cfg)]
    limit = int(args.mem_limit_gb * 2**30) if cfg["device"] == "cpu" else None

    def set_limit() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            preexec_fn=set_limit,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout>{args.timeout}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    err = proc.stderr.strip().splitlines()
    oom = any(s in proc.stderr for s in ("memory", "MemoryError", "bad_alloc", "OutOfMemory"))
    return {"error": "OOM" if oom or proc.returncode == -9 else (err[-1][:80] if err else "?")}


def _fmt(res: dict[str, Any], base: dict[str, Any] | None) -> str:
    if "error" in res:
        return f"{res['error']:>28}"
    text = f"{res['seconds']:8.3f}s {res['mem_mb']:8.0f}MiB"
    if base and "error" not in base:
        text += f" x{base['seconds'] / res['seconds']:4.1f}"
    else:
        text += "  (n/a)" if base else ""
    return f"{text:>28}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true", help="d_model 128 instead of 512")
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 1000, 5000])
    parser.add_argument("--states", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--backends", nargs="+", default=["naive", "torch", "keops"])
    parser.add_argument("--mode", default="dplr", choices=["dplr", "diag"])
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--min-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--mem-limit-gb", type=float, default=8.0)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per configuration")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    d_model = 128 if args.small else 512
    print(
        f"S4 benchmark: device={device} ({args.threads or torch.get_num_threads()} threads) "
        f"mode={args.mode} "
        f"d_model={d_model} n_layers={args.n_layers} bidirectional; time = median of "
        f"{args.steps} steps after {args.warmup} warm-up; memory = peak above live before a step "
        f"({'CUDA allocated' if device == 'cuda' else 'RSS'}); xR = speed-up vs naive",
        flush=True,
    )
    base = {"device": device, "d_model": d_model, "mode": args.mode, "threads": args.threads}
    base.update(n_layers=args.n_layers, steps=args.steps, warmup=args.warmup)
    sections = [("kernel", "kernel only (1 layer: kernel(L) forward + backward)")]
    if not args.skip_train:
        sections.append(("train", "train step (encoder + linear head, fwd + bwd + AdamW)"))
    for what, title in sections:
        print(f"\n== {title}")
        print(f"{'N':>3} {'L':>5} {'batch':>5} " + "".join(f"{b:>28}" for b in args.backends))
        for n in args.states:
            for length in args.lengths:
                results, batches = {}, []
                for backend in args.backends:
                    cfg = {**base, "what": what, "backend": backend, "d_state": n}
                    cfg.update(length=length, batch=args.batch)
                    res = run_config(cfg, args)
                    while what == "train" and res.get("error") == "OOM":
                        if cfg["batch"] // 2 < args.min_batch:
                            break
                        cfg["batch"] //= 2
                        res = run_config(cfg, args)
                    results[backend] = res
                    batches.append(str(cfg["batch"]) if what == "train" else "-")
                ref = results.get("naive")
                cells = "".join(
                    _fmt(results[b], None if b == "naive" else ref) for b in args.backends
                )
                print(
                    f"{n:>3} {length:>5} {'/'.join(dict.fromkeys(batches)):>5} {cells}", flush=True
                )


if __name__ == "__main__":
    main()
