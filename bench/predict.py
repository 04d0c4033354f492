"""Benchmark: ECG-only inference latency and throughput, torch vs the exported ONNX model.

For each model size (``default``: config.yaml, ``reference``: configs/mimic.yaml, 4 x 512)
a method_labs model with seeded random weights (speed does not depend on the values) is
written as ``finetune_labs`` would, exported with :func:`pipeline.infer.export.export_onnx`,
and timed on preprocessed records (12 x 1000 at 100 Hz: file reading excluded, the 4-crop
cut and averaging included, as in ``ecg-explain predict``):

- ``torch``: the trained modules (S4 kernel recomputed from its parameters on every call;
  the baseline);
- ``torch-fixed``: the same with the kernels precomputed (what the export traces);
- ``onnx``: ``model.onnx`` under onnxruntime.

Latency: one record per call, median (and p90) over ``--repeats`` calls after warm-up.
CPU ms: the median CPU seconds of the calling thread per single-record call (the figure
to compare on a loaded machine). Throughput: batches of ``--batch`` records, records/s.
Every backend runs on 1 CPU thread (``--threads`` to change), ratios are against
``torch`` in the same run. The reading + resampling cost per record (the part
``load_batch`` adds) is timed separately.

Usage: ``python bench/predict.py [--sizes default reference] [--repeats 50] [--batch 64]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {"default": REPO / "config.yaml", "reference": REPO / "configs/mimic.yaml"}


def encoder_cfg(size: str) -> dict:
    base = yaml.safe_load((REPO / "config.yaml").read_text())["model"]["ecg_encoder"]
    over = yaml.safe_load(SIZES[size].read_text()).get("model", {}).get("ecg_encoder", {})
    return {**base, **over, "kernel_backend": "torch"}


def write_model(root: Path, size: str) -> Path:
    """A method_labs directory (random weights, MIMIC preprocessing) with model.onnx."""
    from pipeline.infer.export import export_onnx
    from tests.infer_fixtures import write_model_dir

    dx, labs = [f"D{i}" for i in range(40)], [f"L{i}" for i in range(20)]
    out = write_model_dir(root / size, ecg_encoder=encoder_cfg(size), dx=dx, labs=labs, hidden=128)
    export_onnx(out, out / "model.onnx")
    return out


def fixed_torch_scorer(model_dir: Path) -> Callable[[np.ndarray], object]:
    import torch

    from pipeline.infer.bundle import load_bundle
    from pipeline.infer.network import ExplainNet, frozen_copy
    from pipeline.models.supervised import load_supervised

    p = load_bundle(model_dir).prep
    model, _ = load_supervised(model_dir)
    crop, n = int(p.crop_samples or 0), int(p.eval_crops or 0)
    net = ExplainNet(frozen_copy(model.eval(), crop), p.n_samples, crop, n).eval()

    def score(x: np.ndarray) -> object:
        with torch.inference_mode():
            return net(torch.from_numpy(x))

    return score


def timed(
    fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> np.ndarray:
    """Seconds per call of ``fn`` by ``clock`` (wall, or ``time.thread_time``: CPU seconds of
    the calling thread, which runs the whole model with 1 thread and is inflated less than
    wall time by other processes on a loaded machine)."""
    fn()  # warm-up (allocations, ORT graph init)
    fn()
    out = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return np.asarray(out)


def read_cost(root: Path, n: int = 20) -> float:
    """ms per record of read + check + clip + resample + float16 (load_batch), 500 Hz input."""
    from pipeline.data.preprocessing import Preprocessing
    from pipeline.infer.records import expand_inputs, load_batch
    from tests.wfdb_fixtures import ecg_digital, write_record

    rng = np.random.default_rng(0)
    for k in range(n):
        write_record(root / "ecg", 10000000 + k, 40000000 + k, ecg_digital(rng))
    refs = expand_inputs([root / "ecg"])
    prep = Preprocessing(100, 1000, 500, 5000, clip_mv=3.0)  # the default shard settings
    return float(np.median(timed(lambda: load_batch(refs, prep), 5))) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from pipeline.infer.bundle import load_bundle, make_scorer

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "bench"))
    from cpu_info import cpu_model

    print(f"CPU: {cpu_model()}; torch {torch.__version__}; ratios are against torch, this run")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"read + preprocess: {read_cost(root):.2f} ms/record (500 Hz MIMIC-format records)")
        for size in args.sizes:
            model_dir = write_model(root, size)
            bundle = load_bundle(model_dir)
            backends = {
                "torch": make_scorer(bundle, "torch", args.threads),
                "torch-fixed": fixed_torch_scorer(model_dir),
                "onnx": make_scorer(bundle, "onnx", args.threads),
            }
            enc = encoder_cfg(size)
            print(f"\n{size}: S4 {enc['n_layers']} x {enc['d_model']}, {args.threads} thread(s)")
            head = (
                f"{'backend':12s} {'latency ms':>11s} {'p90 ms':>8s} {'CPU ms':>8s} {'rec/s':>9s}"
            )
            print(f"{head} {'speed-up (latency, CPU, rec/s) vs torch':>41s}")
            base: dict[str, float] = {}
            for name, score in backends.items():
                one = rng.normal(0, 0.3, (1, 12, 1000)).astype(np.float32)
                batch = rng.normal(0, 0.3, (args.batch, 12, 1000)).astype(np.float32)
                lat = timed(lambda s=score, x=one: s(x), args.repeats) * 1e3
                cpu = np.median(timed(lambda s=score, x=one: s(x), args.repeats, time.thread_time))
                thr = args.batch / np.median(timed(lambda s=score, x=batch: s(x), 5))
                base.setdefault("lat", float(np.median(lat)))
                base.setdefault("cpu", float(cpu) * 1e3)
                base.setdefault("thr", float(thr))
                print(
                    f"{name:12s} {np.median(lat):11.2f} {np.percentile(lat, 90):8.2f} "
                    f"{cpu * 1e3:8.2f} {thr:9.1f} {base['lat'] / np.median(lat):17.2f}x "
                    f"{base['cpu'] / (cpu * 1e3):6.2f}x {thr / base['thr']:9.2f}x"
                )


if __name__ == "__main__":
    main()
