"""Benchmark the S4 encoder: kernel backends, and the fast path against the old formulation.

Sections (each configuration in its own subprocess):

* ``kernel``: one layer's kernel(L) forward + backward per backend; ``naive`` materialises the
  (K, H, N/2, L) Cauchy tensor (the baseline), ``torch`` is the chunked path, ``keops`` pykeops.
* ``train``: encoder + linear head train step (fwd + bwd + AdamW) per backend, vs ``naive``.
* ``layout``: the same train step "before" (``pipeline.models.reference``: the formulation
  before issue 11, channels-first with Conv1d(k=1) maps, autograd through torch.fft, nn.Dropout,
  on the same weights and kernel code) against "after" (the encoder's own forward).
  Both run interleaved in one process (step before, step after, ...), so load from other jobs
  hits both alike; the ratio is the median of the per-pair ratios. Peak memory per variant
  comes from separate processes.
* ``eval``: single-record (batch 1) eval-mode latency under no_grad, before vs after
  (the after path reuses its cached SSM kernels), interleaved likewise.

Time: medians of the timed steps after warm-up. Memory: peak of one extra step above what is
live before it: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak resident set
(VmHWM, reset through /proc/self/clear_refs) with glibc switched to mmap for large blocks, so
that the RSS follows live tensors. On CPU a worker gets an address-space limit (--mem-limit-gb)
so that an exploding configuration fails with "OOM" instead of swapping; a failed train step
is retried with half the batch down to --min-batch. ``--malloc`` makes every worker call
``pipeline.models.ops.reuse_freed_memory`` (glibc keeps freed blocks for reuse).

Usage:
    python bench/s4.py                             # everything at the reference sizes
    python bench/s4.py --sections layout eval --d-model 64 --n-layers 2   # default size
    python bench/s4.py --tiny --device cpu         # plumbing check in seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_info import cpu_model
from s4_worker import worker

SECTIONS = ("kernel", "train", "layout", "eval")


def run_config(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run a worker subprocess; {"error": ...} on OOM, timeout or crash."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(cfg)]
    limit = int(args.mem_limit_gb * 2**30) if cfg["device"] == "cpu" else None

    def set_limit() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, preexec_fn=set_limit
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout>{args.timeout}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    err = proc.stderr.strip().splitlines()
    oom = any(s in proc.stderr for s in ("memory", "MemoryError", "bad_alloc", "OutOfMemory"))
    return {"error": "OOM" if oom or proc.returncode == -9 else (err[-1][:80] if err else "?")}


def run_train(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A train-step worker, halving the batch on OOM down to --min-batch."""
    res = run_config(cfg, args)
    while res.get("error") == "OOM" and cfg["batch"] // 2 >= args.min_batch:
        cfg["batch"] //= 2
        res = run_config(cfg, args)
    return {**res, "batch": cfg["batch"]}


def _cell(res: dict[str, Any], base: dict[str, Any] | None) -> str:
    if "error" in res:
        return f"{res['error']:>28}"
    text = f"{res['seconds']:8.3f}s {res['mem_mb']:8.0f}MiB"
    if base is not None:
        ok = "error" not in base
        text += f" x{base['seconds'] / res['seconds']:4.1f}" if ok else "  (n/a)"
    return f"{text:>28}"


Sink = Callable[[list[dict]], None]


def backend_section(what: str, base: dict[str, Any], args: argparse.Namespace, add: Sink) -> None:
    """Kernel or train step per backend, ratios vs naive; each row goes to ``add`` when done."""
    print(f"{'N':>3} {'L':>5} {'batch':>5} " + "".join(f"{b:>28}" for b in args.backends))
    for n in args.states:
        for length, batch in zip(args.lengths, args.batches, strict=True):
            results, batches = {}, []
            for backend in args.backends:
                cfg = {**base, "what": what, "backend": backend, "d_state": n}
                cfg.update(length=length, batch=batch)
                results[backend] = (
                    run_train(cfg, args) if what == "train" else run_config(cfg, args)
                )
                batches.append(str(results[backend]["batch"]) if what == "train" else "-")
            ref = results.get("naive")
            cells = "".join(_cell(results[b], None if b == "naive" else ref) for b in args.backends)
            print(f"{n:>3} {length:>5} {'/'.join(dict.fromkeys(batches)):>5} {cells}", flush=True)
            add(
                [
                    {"section": what, "N": n, "L": length, "backend": b, **r}
                    for b, r in results.items()
                ]
            )


def _fmt_pair(res: dict[str, Any], mem: dict[str, dict[str, Any]] | None) -> str:
    if "error" in res:
        return f"  {res['error']}"
    text = f"{res['before']:9.3f}s {res['after']:9.3f}s   x{res['ratio']:5.2f}"
    text += f"  [{res['ratio_lo']:.2f}-{res['ratio_hi']:.2f}]"
    if mem is not None:
        text += "".join(
            f" {m['mem_mb']:9.0f}MiB" if "error" not in m else f" {m['error']:>12}"
            for m in (mem["before"], mem["after"])
        )
    return text


def pair_section(what: str, base: dict[str, Any], args: argparse.Namespace, add: Sink) -> None:
    """Before vs after, interleaved in one worker; memory per variant for train steps."""
    head = (
        f"{'N':>3} {'L':>5} {'batch':>5} {'before':>10} {'after':>10} {'ratio':>8} {'(range)':>12}"
    )
    print(head + (f" {'mem before':>12} {'mem after':>12}" if what == "layout" else ""))
    for length, batch in zip(args.lengths, args.batches, strict=True):
        cfg = {**base, "what": what, "backend": args.layout_backend, "d_state": args.states[0]}
        cfg.update(length=length, batch=batch if what == "layout" else 1, profile=args.profile)
        res = run_train(cfg, args) if what == "layout" else run_config(cfg, args)
        mem = None
        if what == "layout" and "error" not in res:
            mem = {
                v: run_config({**cfg, "what": "mem", "variant": v, "batch": res["batch"]}, args)
                for v in ("before", "after")
            }
        print(
            f"{cfg['d_state']:>3} {length:>5} {res.get('batch', 1):>5} {_fmt_pair(res, mem)}",
            flush=True,
        )
        for variant, table in res.pop("profile", {}).items():
            print(f"   top {args.profile} ops by self CPU, {variant} (L {length}):")
            print("\n".join(f"     {line}" for line in table))
        add([{"section": what, "L": length, **res, "mem": mem}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--small", action="store_true", help="d_model 128 (same as --d-model)")
    parser.add_argument("--tiny", action="store_true", help="plumbing check: tiny sizes, 1 step")
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 1000, 5000])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 16, 4], help="per length")
    parser.add_argument("--states", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--backends", nargs="+", default=["naive", "torch", "keops"])
    parser.add_argument("--layout-backend", default="torch", help="kernel backend of layout/eval")
    parser.add_argument("--mode", default="dplr", choices=["dplr", "diag"])
    parser.add_argument("--min-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument("--eval-steps", type=int, default=20, help="timed eval forwards")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--malloc", action="store_true", help="reuse_freed_memory() in workers")
    parser.add_argument("--profile", type=int, default=0, help="top-N ops of layout steps")
    parser.add_argument("--mem-limit-gb", type=float, default=8.0)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per configuration")
    parser.add_argument("--skip-train", action="store_true", help="drop the train section")
    parser.add_argument(
        "--json", type=Path, help="also write every result to this file (after each row)"
    )
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    if args.small:
        args.d_model = 128
    if args.tiny:
        args.d_model, args.n_layers, args.lengths, args.batches = 16, 1, [64, 128], [2, 2]
        args.states, args.steps, args.eval_steps, args.warmup = [4], 1, 2, 0
    if len(args.batches) != len(args.lengths):
        parser.error("--batches needs one batch size per --lengths entry")
    if args.skip_train and "train" in args.sections:
        args.sections.remove("train")

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/s4.py: --device cuda but torch sees no CUDA device")
    where = torch.cuda.get_device_name() if device == "cuda" else cpu_model()
    print(
        f"S4 benchmark on {where}: device={device} "
        f"({args.threads or torch.get_num_threads()} threads) "
        f"mode={args.mode} d_model={args.d_model} n_layers={args.n_layers} bidirectional, "
        f"dropout 0.2; time = median of {args.steps} steps after {args.warmup} warm-up; memory = "
        f"peak above live before a step ({'CUDA allocated' if device == 'cuda' else 'RSS'})"
        f"{'; glibc reuse_freed_memory' if args.malloc else ''}",
        flush=True,
    )
    base = {"device": device, "d_model": args.d_model, "mode": args.mode, "threads": args.threads}
    base.update(n_layers=args.n_layers, steps=args.steps, warmup=args.warmup, malloc=args.malloc)
    base.update(eval_steps=args.eval_steps)
    titles = {
        "kernel": "kernel only (1 layer: kernel(L) forward + backward); xR = speed-up vs naive",
        "train": "train step (encoder + linear head, fwd + bwd + AdamW); xR = speed-up vs naive",
        "layout": "train step before (pre-issue-11 formulation) vs after, interleaved; "
        "ratio = before / after (median, range of pairs)",
        "eval": "single-record eval latency (batch 1, no_grad), before vs after, interleaved",
    }
    rows: list[dict] = []

    def add(new: list[dict]) -> None:
        """Keep rows; rewrite --json each time, so a run killed by a timeout keeps its rows."""
        rows.extend(new)
        if args.json:
            args.json.write_text(json.dumps({"config": base, "rows": rows}, indent=1) + "\n")

    for section in args.sections:
        print(f"\n== {titles[section]}")
        if section in ("kernel", "train"):
            backend_section(section, base, args, add)
        else:
            pair_section(section, base, args, add)


if __name__ == "__main__":
    main()
