"""One bench/s4.py configuration, run in its own process (see bench/s4.py for the sections)."""

from __future__ import annotations

import ctypes
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def _setup(cfg: dict[str, Any]) -> Any:
    import torch

    torch.manual_seed(0)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    if cfg.get("malloc") and cfg["what"] != "mem":
        from pipeline.models.ops import reuse_freed_memory

        reuse_freed_memory()
    return torch.device(cfg["device"])


def _train_parts(cfg: dict[str, Any], dev: Any) -> dict[str, Callable[..., None]]:
    """Train-step closures {"before": ..., "after": ...} on one encoder, head and optimiser."""
    import torch

    from pipeline.models import ECGEncoder
    from pipeline.models import reference as ref

    enc = ECGEncoder(
        12, cfg["d_model"], cfg["n_layers"], cfg["d_state"], cfg["mode"], True, 0.2, cfg["backend"]
    ).to(dev)
    head = torch.nn.Linear(cfg["d_model"], 20).to(dev)
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(cfg["batch"], 12, cfg["length"], device=dev)
    y = (torch.rand(cfg["batch"], 20, device=dev) < 0.2).float()
    forwards = {"before": lambda t: ref.encoder_forward(enc, t), "after": enc}

    def make(forward: Callable[[Any], Any]) -> Callable[..., None]:
        def step(length: int = cfg["length"]) -> None:
            logits = head(forward(x[..., :length]))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    return {name: make(fwd) for name, fwd in forwards.items()}


def _sync(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def _interleaved(steps: dict[str, Callable[[], None]], n: int, dev: Any) -> dict[str, Any]:
    """Alternate the variants (order flipped every round); medians and per-round ratios."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(n):
        for name in list(steps) if i % 2 == 0 else list(steps)[::-1]:
            t0 = time.perf_counter()
            steps[name]()
            _sync(dev)
            times[name].append(time.perf_counter() - t0)
    ratios = [b / a for b, a in zip(times["before"], times["after"], strict=True)]
    out: dict[str, Any] = {name: statistics.median(ts) for name, ts in times.items()}
    out.update(ratio=statistics.median(ratios), ratio_lo=min(ratios), ratio_hi=max(ratios))
    out["times"] = times
    return out


def _profile(step: Callable[[], None], top: int) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        f"{e.key[:34]:34} {e.self_cpu_time_total / 1e3:9.1f} ms"
        f" {100 * e.self_cpu_time_total / total:5.1f}% {e.count:5d} calls"
        for e in events[:top]
    ]


def _kernel_step(cfg: dict[str, Any], dev: Any) -> Callable[..., None]:
    from pipeline.models import S4Layer

    layer = S4Layer(cfg["d_model"], cfg["d_state"], mode=cfg["mode"], kernel_backend="torch")
    layer = layer.to(dev)

    def step(length: int = cfg["length"]) -> None:
        k = layer.kernel(length, backend=cfg["backend"])  # (C_out, H, L)
        k.square().sum().backward()

    return step


def _timed(step: Callable[..., None], cfg: dict[str, Any], dev: Any) -> dict[str, Any]:
    """Warm-up (library loading, optimiser state, KeOps compilation), then the timed steps."""
    step(16)
    for _ in range(cfg["warmup"]):
        step()
    _sync(dev)
    times = []
    for _ in range(cfg["steps"]):
        t0 = time.perf_counter()
        step()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "mem_mb": _peak_mb(step, dev)}


def _peak_mb(step: Callable[..., None], dev: Any) -> float:
    """Peak memory of one more step above what is live before it (activations, temporaries)."""
    import torch

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        return max((torch.cuda.max_memory_allocated() - base) / 2**20, 0.0)
    _cpu_memory_mode()
    base = _status_mb("VmRSS")
    step()
    return max(_status_mb("VmHWM") - base, 0.0)


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration (cfg["what"]: kernel, train, layout, mem or eval)."""
    dev = _setup(cfg)
    what = cfg["what"]
    if what == "kernel":
        return _timed(_kernel_step(cfg, dev), cfg, dev)
    if what == "eval":
        return _eval(cfg, dev)
    steps = _train_parts(cfg, dev)
    if what == "train":
        return _timed(steps["after"], cfg, dev)
    if what == "mem":
        step = steps[cfg["variant"]]
        step(16)
        for _ in range(max(cfg["warmup"], 1)):
            step()
        return {"mem_mb": _peak_mb(step, dev)}
    for step in steps.values():  # layout: warm both up, then interleave
        step(16)
        for _ in range(cfg["warmup"]):
            step()
    _sync(dev)
    out = _interleaved(steps, cfg["steps"], dev)
    if cfg.get("profile") and dev.type == "cpu":
        out["profile"] = {name: _profile(step, cfg["profile"]) for name, step in steps.items()}
    return out


def _eval(cfg: dict[str, Any], dev: Any) -> dict[str, Any]:
    """Batch-1 eval-mode forward under no_grad, before vs after (cached kernels)."""
    import torch

    from pipeline.models import ECGEncoder
    from pipeline.models import reference as ref

    enc = ECGEncoder(
        12, cfg["d_model"], cfg["n_layers"], cfg["d_state"], cfg["mode"], True, 0.2, cfg["backend"]
    )
    enc = enc.to(dev).eval()
    x = torch.randn(1, 12, cfg["length"], device=dev)
    with torch.no_grad():
        steps = {"before": lambda: ref.encoder_forward(enc, x), "after": lambda: enc(x)}
        for step in steps.values():
            step()
        return _interleaved(steps, cfg["eval_steps"], dev)
