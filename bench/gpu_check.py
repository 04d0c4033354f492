"""Python half of bench/gpu_check.sh: environment report, KeOps warm-up, summary table.

Subcommands (the shell script calls them; each can be run on its own):

* ``preflight --device D --out DIR``: what is installed and visible (torch and its CUDA build,
  the GPU, the pykeops and snakemake versions, CPU cores); writes DIR/preflight.json. Fails
  when ``--device cuda`` and torch sees no CUDA device. pykeops is not imported here: on a
  CUDA machine its first import builds a binary (the next subcommand's job).
* ``keops-warmup --device D``: the first pykeops import (on CUDA it builds KeOps' nvrtc
  binary) and use on D, compiling the Cauchy (K = 6, float32 and float64) and Vandermonde
  (K = 2, float64) reductions with their gradients, the formulas the kernel tests and
  bench/s4.py use, checked against the torch backend. Later steps find them in the KeOps cache.
* ``summary --out DIR --workdir W``: one markdown table from DIR/steps.tsv (written by the
  shell script) and the steps' outputs: test counts (junit XML), bench/s4.py's and
  bench/loader.py's JSON, the bf16 step rates against fp32 (bench/train_rate.py's table), the
  pre-training log, history and benchmark table. Printed and written to DIR/summary.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BACKENDS = ("naive", "torch", "keops")


# ------------------------------------------------------------------------------- preflight


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nvidia_smi() -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "not found"
    query = "--query-gpu=name,memory.total,driver_version"
    try:
        proc = subprocess.run(
            [exe, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    return proc.stdout.strip().replace("\n", "; ") or f"failed: {proc.stderr.strip()[:80]}"


def preflight(device: str, out: Path) -> int:
    """Print and record what the machine offers; 1 when CUDA is wanted but missing."""
    import torch

    info: dict[str, Any] = {
        "device_requested": device,
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "nvidia_smi": _nvidia_smi(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "snakemake": _version("snakemake"),
        "pykeops": _version("pykeops"),
        "disk_free_gb": round(shutil.disk_usage(out).free / 2**30, 1),
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
        )
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:>{width}}: {value}")
    (out / "preflight.json").write_text(json.dumps(info, indent=1) + "\n")
    if device == "cuda" and not info["cuda_available"]:
        print("preflight: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- KeOps warm-up


def keops_warmup(device: str) -> int:
    """Compile and check the KeOps reductions the later steps use (see module docstring)."""
    import torch

    t0 = time.perf_counter()
    import pykeops

    from pipeline.models.cauchy import (
        cauchy_keops,
        cauchy_torch,
        vandermonde_keops,
        vandermonde_torch,
    )

    uses_cuda = bool(pykeops.pykeopsconfig.pykeops_cuda.get_use_cuda())
    dev = torch.device(device)
    print(f"pykeops {pykeops.__version__} import: {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"pykeops uses CUDA: {uses_cuda}", flush=True)
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    cases = [("cauchy", torch.float32), ("cauchy", torch.float64), ("vandermonde", torch.float64)]
    for kind, dtype in cases:
        start = time.perf_counter()
        cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        k = 6 if kind == "cauchy" else 2
        v = torch.randn(3, k, 4, dtype=cdtype, generator=gen)
        w = torch.complex(
            -torch.rand(3, 4, dtype=dtype, generator=gen) - 0.1,
            3 * torch.randn(3, 4, dtype=dtype, generator=gen),
        )
        z = torch.randn(17, dtype=cdtype, generator=gen)
        v, w, z = v.to(dev), w.to(dev), z.to(dev)
        grads = []
        for backend in ("keops", "torch"):
            # Vandermonde: the exponent gradient only (as the tests; each formula compiles)
            vv = v.clone().requires_grad_(kind == "cauchy")
            ww = w.clone().requires_grad_(True)
            if kind == "cauchy":
                fn = cauchy_keops if backend == "keops" else cauchy_torch
                out = fn(vv, z, ww)
                (out.real.square().sum() + out.imag.sum()).backward()
            else:
                fn = vandermonde_keops if backend == "keops" else vandermonde_torch
                out = fn(vv, 0.1 * ww, 9)
                out.square().sum().backward()
            grads.append([out.detach(), vv.grad, ww.grad])
        errs = []
        for got, want in zip(*grads, strict=True):
            if got is None or want is None:  # no gradient asked for
                continue
            scale = want.abs().max().item() or 1.0
            errs.append((got - want).abs().max().item() / scale)
        err = max(errs)
        worst = max(worst, err)
        print(
            f"{kind} K={k} {str(dtype).split('.')[-1]} on {dev}: compile + run "
            f"{time.perf_counter() - start:.1f}s, max rel err vs torch {err:.1e}",
            flush=True,
        )
    print(f"keops warm-up total {time.perf_counter() - t0:.1f}s; worst rel err {worst:.1e}")
    if dev.type == "cuda" and not uses_cuda:
        print("keops-warmup: pykeops runs without CUDA on a CUDA machine", file=sys.stderr)
        return 1
    return 0 if worst < 1e-3 else 1


# ---------------------------------------------------------------------------------- summary


def _read_steps(out: Path) -> list[dict[str, str]]:
    path = out / "steps.tsv"
    if not path.exists():
        return []
    keys = ("step", "status", "seconds", "note")
    return [
        dict(zip(keys, line.split("\t"), strict=False))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def _preflight_figure(out: Path) -> str:
    path = out / "preflight.json"
    if not path.exists():
        return ""
    info = json.loads(path.read_text())
    gpu = info.get("gpu") or f"no CUDA device (nvidia-smi: {info.get('nvidia_smi')})"
    keops = info.get("pykeops", "?")
    cuda = info.get("torch_cuda_build") or "cpu build"
    return (
        f"{gpu}; torch {info.get('torch')} (CUDA {cuda}); pykeops {keops}; "
        f"snakemake {info.get('snakemake')}; {info.get('cpu_cores')} CPU cores"
    )


def _warmup_figure(out: Path) -> str:
    log = out / "keops_warmup.log"
    text = log.read_text() if log.exists() else ""
    parts = []
    found = re.search(r"import: ([\d.]+)s", text)
    if found:
        parts.append(f"pykeops import {found[1]} s")
    found = re.search(r"pykeops uses CUDA: (\w+)", text)
    if found:
        parts.append(f"uses CUDA: {found[1]}")
    found = re.search(r"keops warm-up total ([\d.]+)s; worst rel err (\S+)", text)
    if found:
        parts.append(f"import + compile + check {found[1]} s, worst rel err vs torch {found[2]}")
    return ", ".join(parts)


def _tests_figure(out: Path) -> str:
    path = out / "kernel_tests.xml"
    if not path.exists():
        return ""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return "junit XML unreadable"
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return ""
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    text = f"{passed}/{n['tests']} passed, {n['failures']} failed, {n['errors']} errors"
    text += f", {n['skipped']} skipped" if n["skipped"] else ""
    bad = [
        (case.get("name", "?"), problem.get("message", "").splitlines() or [""])
        for case in suite.iter("testcase")
        for problem in (case.find("failure"), case.find("error"))
        if problem is not None
    ]
    if bad:
        names = ", ".join(name for name, _ in bad[:3])
        text += f" (first: {names}; {bad[0][1][0][:120]})"
    return text + f"; S4_TEST_DEVICE={os.environ.get('S4_TEST_DEVICE', '?')}"


def _ms(res: dict[str, Any]) -> str:
    return f"{1e3 * res['seconds']:.2f} ms"


def _bench_rows(out: Path) -> list[tuple[str, str, str, str]]:
    """One row per (section, N, L): each backend's median time and peak memory, and ratios."""
    path = out / "bench_s4.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    cells: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
    for row in data["rows"]:
        if row.get("section") in ("kernel", "train"):
            cells.setdefault((row["section"], row["N"], row["L"]), {})[row["backend"]] = row
    rows = []
    for (section, n, length), res in cells.items():
        parts, errors = [], []
        for backend in BACKENDS:
            r = res.get(backend)
            if r is None:
                continue
            if "error" in r:
                errors.append(backend)
                parts.append(f"{backend} {r['error']}")
                continue
            text = f"{backend} {_ms(r)} / {r['mem_mb']:.0f} MiB"
            if section == "train" and "batch" in r:
                text += f" (batch {r['batch']})"
            parts.append(text)
        ok = {b: r for b, r in res.items() if "error" not in r}
        ratios = [
            f"{fast} x{ok[slow]['seconds'] / ok[fast]['seconds']:.2f} vs {slow}"
            for slow, fast in (("naive", "torch"), ("naive", "keops"), ("torch", "keops"))
            if slow in ok and fast in ok and ok[fast]["seconds"] > 0
        ]
        label = f"bench {section} N={n} L={length}"
        status = "ok" if not errors else f"FAILED ({', '.join(errors)})"
        speed = f"; speed-up {', '.join(ratios)}" if ratios else ""
        rows.append((label, status, "", "; ".join(parts) + speed))
    return rows


def _loader_figure(out: Path) -> str:
    """samples/s per worker count, and against the GPU estimate and the CPU step if measured."""
    path = out / "bench_loader.json"
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    rates = ", ".join(
        f"{r['workers']} workers {r['samples_s']:,.0f}" for r in data["rows"] if r["crop"] == 250
    )
    if not rates:
        return ""
    best = max(r["samples_s"] for r in data["rows"])
    text = f"samples/s at crop 250 ({data['device']}): {rates}; best / GPU estimate 6,300 "
    text += f"= {best / 6300:.2f}"
    steps = data.get("step_samples_s") or {}
    if steps:
        text += "; CPU step " + ", ".join(f"{k} {v:,.1f}" for k, v in steps.items())
    return text


def _amp_figure(out: Path) -> str:
    """bf16 samples/s per stage and its ratio to fp32 (bench/train_rate.py's table rows)."""
    log = out / "amp_step.log"
    text = log.read_text() if log.exists() else ""
    rows = re.findall(r"^\| \w+ \| \d+ \| bf16 \| (\w+) \| ([\d.]+) \| ([\d.]+) \|", text, re.M)
    return ", ".join(f"{stage} bf16 {rate} samples/s = x{x} fp32" for stage, rate, x in rows)


def _stamp(line: str) -> float | None:
    found = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
    if not found:
        return None
    return datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S").timestamp() + int(found[2]) / 1e3


def _pretrain_figure(workdir: Path, out: Path) -> str:
    """Epoch wall time and throughput from the stage's log, losses from its history."""
    results = workdir / "results"
    log = results / "logs" / "pretrain.log"
    history = results / "models" / "pretrain" / "history.tsv"
    parts = []
    if log.exists():
        start = end = None
        n_train = None
        for line in log.read_text().splitlines():
            if "pre-training on" in line:
                start = _stamp(line)
                found = re.search(r"pre-training on (\d+) train", line)
                n_train = int(found[1]) if found else None
            elif re.search(r"pretrain epoch \d+/\d+:", line):
                end = _stamp(line)
        if start is not None and end is not None:
            text = f"epoch 1 (train + val) {end - start:.1f} s"
            if n_train:
                text += f", {n_train / max(end - start, 1e-9):.0f} train samples/s"
            parts.append(text)
    if history.exists():
        lines = history.read_text().splitlines()
        head, last = lines[0].split("\t"), lines[-1].split("\t")
        rec = dict(zip(head, last, strict=False))
        parts.append(f"loss {rec.get('loss', '?')}, val_loss {rec.get('val_loss', '?')}")
    probe = results / "models" / "pretrain" / "probe.json"
    if probe.exists():
        auroc = json.loads(probe.read_text()).get("macro_auroc", math.nan)
        parts.append(f"probe AUROC {auroc:.3f}")
    bench = results / "benchmarks" / "pretrain.tsv"
    if bench.exists():
        head, row = bench.read_text().splitlines()[:2]
        rec = dict(zip(head.split("\t"), row.split("\t"), strict=False))
        parts.append(f"rule wall {float(rec['s']):.1f} s, peak RSS {float(rec['max_rss']):.0f} MB")
    return "; ".join(parts)


def _prep_figure(out: Path) -> str:
    log = out / "data_prep.log"
    text = log.read_text() if log.exists() else ""
    parts = []
    found = re.search(r"id lists: (\{[^}]*\})", text)
    if found:
        parts.append(f"id lists {found[1]}")
    steps = re.findall(r"(\d+) of (\d+) steps", text)
    if steps:
        parts.append(f"{steps[-1][0]}/{steps[-1][1]} jobs")
    elif "Nothing to be done" in text:
        parts.append("up to date")
    return ", ".join(parts)


def summary(out: Path, workdir: Path) -> int:
    """Print the markdown table; 0 when every step is ok."""
    figures = {
        "preflight": _preflight_figure(out),
        "keops_warmup": _warmup_figure(out),
        "data_prep": _prep_figure(out),
        "kernel_tests": _tests_figure(out),
        "amp_step": _amp_figure(out),
        "pretrain": _pretrain_figure(workdir, out),
        "bench_loader": _loader_figure(out),
    }
    rows: list[tuple[str, str, str, str]] = []
    steps = _read_steps(out)
    for step in steps:
        figure = figures.get(step["step"], "")
        note = step.get("note", "")
        bench = _bench_rows(out) if step["step"] == "bench_s4" else []
        if bench:
            figure = f"{len(bench)} configurations x {len(BACKENDS)} backends (rows below)"
        log = out / f"{step['step']}.log"
        if not figure and step["status"] not in ("ok", "skipped") and log.exists():
            last = [line.strip() for line in log.read_text().splitlines() if line.strip()]
            figure = f"log: {last[-1][:160]}" if last else ""
        figure = "; ".join(x for x in (note, figure) if x)
        rows.append((step["step"], step["status"], step["seconds"], figure))
        rows += bench
    lines = ["| step | status | seconds | key figure |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows]
    table = "\n".join(lines)
    print(table)
    (out / "summary.md").write_text(table + "\n")
    return 0 if steps and all(s["status"] == "ok" for s in steps) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    pre = sub.add_parser("preflight")
    pre.add_argument("--device", choices=["cpu", "cuda"], required=True)
    pre.add_argument("--out", type=Path, required=True)
    warm = sub.add_parser("keops-warmup")
    warm.add_argument("--device", choices=["cpu", "cuda"], required=True)
    summ = sub.add_parser("summary")
    summ.add_argument("--out", type=Path, required=True)
    summ.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    if args.cmd == "preflight":
        sys.exit(preflight(args.device, args.out))
    if args.cmd == "keops-warmup":
        sys.exit(keops_warmup(args.device))
    sys.exit(summary(args.out, args.workdir))


if __name__ == "__main__":
    main()
