"""Benchmark scripts still run against the package they measure (tiny sizes, no timing asserts).

Speed is the benchmarks' business, not the tests': these only catch an API change in
``pipeline`` that would leave a bench script broken until someone next needs its numbers
(``bench/predict.py`` broke that way once, when ``Preprocessing.clip_mv`` became required).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.snakemake_helpers import REPO


def test_predict_bench_prints_every_backend() -> None:
    args = ["--sizes", "default", "--repeats", "3", "--batch", "4"]
    proc = subprocess.run(
        [sys.executable, "bench/predict.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = dict(re.findall(r"^(torch|torch-fixed|onnx)\s+([\d.]+)\s", proc.stdout, re.M))
    assert set(rows) == {"torch", "torch-fixed", "onnx"}, proc.stdout
    assert all(float(ms) > 0 for ms in rows.values())
    assert re.search(r"read \+ preprocess: [\d.]+ ms/record", proc.stdout)


def test_shard_bench_prints_the_check_cost(tmp_path) -> None:
    import numpy as np

    from tests.train_fixtures import _write_shards

    ecg = np.random.default_rng(0).normal(0, 1, (30, 12, 1000)).astype(np.float16)
    index = _write_shards(tmp_path / "shards", np.arange(30, dtype=np.int64), ecg, size=8)
    proc = subprocess.run(
        [sys.executable, "bench/shard.py", "--index", str(index), "--repeats", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"30 records, 4 shard\(s\).* hash / read = ([\d.]+), sizes / read", proc.stdout)
    assert m and float(m.group(1)) > 0, proc.stdout


def test_run_profile_accounts_for_a_finished_run(tiny_run) -> None:
    proc = subprocess.run(
        [sys.executable, "bench/run_profile.py", str(tiny_run), "--cores", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert re.search(r"^\s*train_signal_only\s+[\d.]+\s+[\d.]+\s+1\s", out, re.M), out
    path = re.search(r"## critical path: (\d+) s of (\d+) s\n(.*)", out)
    assert path and int(path.group(1)) <= int(path.group(2)) + 1
    assert path.group(3).startswith("synthesize_cohort") and "report" in path.group(3)
    replay = re.search(r"## replay on 2 cores.*\(measured (\d+) s\): (\d+) s", out)
    # jobs already on 1 thread: the run replayed without Snakemake's gaps between jobs
    assert replay and int(path.group(1)) - 1 <= int(replay.group(2)) <= int(replay.group(1)) + 1
    epochs = re.search(r"^\s*train_signal_only\s+[\d.]+\s+(\d+)/(\d+)\s", out, re.M)
    assert epochs and epochs.groups() == ("2", "2")  # .test/config.yaml: 2 epochs


def test_loader_bench_reports_each_worker_count(tmp_path) -> None:
    args = ["--records", "32", "--shard-size", "16", "--sizes", "default", "--crops", "250"]
    args += ["--seconds", "0.1", "--step-steps", "0", "--json", str(tmp_path / "loader.json")]
    proc = subprocess.run(
        [sys.executable, "bench/loader.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "loader.json").read_text())["rows"]
    assert [r["workers"] for r in rows] == [0, 2, 4]
    assert all(r["samples_s"] > 0 and r["batch"] == 32 and r["crop"] == 250 for r in rows)
    assert re.search(r"^\| default \| 32 \| 250 \| 4 \| [\d.]+ \| [\d,]+ \|", proc.stdout, re.M)
    assert "GPU estimate (docs/scaling.md, reference model): 1,600-6,300 samples/s" in proc.stdout


def test_train_rate_bench_compares_bf16_with_fp32() -> None:
    args = ["--sizes", "default", "--steps", "1", "--batch", "4", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, "bench/train_rate.py", *args, "--precision", "bf16"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(
        r"^\| default \| 4 \| (\w+) \| (\w+) \| ([\d.]+) \| ([\d.]+) \|", proc.stdout, re.M
    )
    assert [(p, s) for p, s, _, _ in rows] == [
        (p, s) for p in ("fp32", "bf16") for s in ("pretrain", "finetune", "inference")
    ], proc.stdout
    assert all(float(rate) > 0 for _, _, rate, _ in rows)
    assert [float(x) for p, _, _, x in rows if p == "fp32"] == [1.0, 1.0, 1.0]  # the baseline


def test_head_feed_bench_compares_stacked_rows_with_per_item_collation() -> None:
    args = ["--records", "300", "--labels", "5", "--batch", "64", "--repeats", "1"]
    proc = subprocess.run(
        [sys.executable, "bench/head_feed.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("18 batches of 64 (record, crop) rows per epoch"), proc.stdout
    for label in ("item by item (before)", "stacked rows (now)", "head steps, for scale"):
        assert re.search(rf"{re.escape(label)}: +[\d.]+ ms per epoch", proc.stdout), label
    assert re.search(r"feed speed-up: +[\d.]+x", proc.stdout)
