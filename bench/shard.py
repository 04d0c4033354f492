"""Benchmark: shard_group against a straightforward per-record loop.

On the same generated MIMIC-IV-ECG-format records (two sizes), each method runs in a
fresh subprocess so its peak RSS is its own:

- baseline: for each record ``wfdb.rdrecord`` -> clip -> ``scipy.signal.resample`` (FFT)
  -> ``np.save`` one .npy per record (float32).
- ours: :func:`pipeline.data.shard.shard_group` (native header parser, batched polyphase
  resampling, float16 shards), with 1 and ``--workers`` processes, and with
  ``reader="wfdb"`` to separate the reader's share from the rest.

Usage: ``python bench/shard.py [--sizes 500 2000] [--workers 2]``. Prints records/s (wall),
CPU ms per record (user + system, workers included: meaningful on a busy machine), peak
RSS (main process; forked workers separately) and ratios against the baseline.

The shard check (issue 23): on the shards of each size, the time the store's checks take
when it opens (sizes: a ``stat`` per shard; SHA-256 of every shard) against one pass of
reading every record the way an epoch does (a new store, ``get_many`` in shuffled batches
of 64), in the same process, page cache warm for all three; median of ``--repeats``.
``python bench/shard.py --index results/shards/index.parquet`` measures an existing run's
shards the same way.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def generate(root: Path, n: int, n_distinct: int = 50) -> Path:
    """Write ``n`` records and a cohort.parquet; return the cohort path.

    ``n_distinct`` records are written with ``wfdb.wrsamp`` (tests.wfdb_fixtures); the
    rest are byte copies of them under new study ids (header renamed), which is much
    faster to generate and reads exactly the same way.
    """
    import polars as pl

    from tests.wfdb_fixtures import make_cohort, record_path

    ecg = root / "ecg"
    templates, _ = make_cohort(ecg, min(n, n_distinct), seed=1)
    rows = [templates]
    last = templates["study_id"].max()
    for i in range(n - templates.height):
        t = templates.row(i % templates.height, named=True)
        study, subject = last + 1 + i, 20000000 + i // 2
        path = record_path(subject, study)
        (ecg / path).parent.mkdir(parents=True, exist_ok=True)
        src = ecg / t["path"]
        hea = src.with_name(src.name + ".hea").read_text()
        (ecg / (path + ".hea")).write_text(hea.replace(str(t["study_id"]), str(study)))
        (ecg / (path + ".dat")).write_bytes(src.with_name(src.name + ".dat").read_bytes())
        rows.append(pl.DataFrame([t | {"study_id": study, "subject_id": subject, "path": path}]))
    out = root / "cohort.parquet"
    pl.concat(rows, how="vertical_relaxed").write_parquet(out)
    return out


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (load-independent)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline(cohort: Path, ecg_root: Path, out: Path) -> int:
    """The per-record loop most scripts start with."""
    import polars as pl
    import wfdb
    from scipy.signal import resample

    out.mkdir(parents=True)
    rows = pl.read_parquet(cohort).select("study_id", "path").iter_rows()
    n = 0
    for study_id, path in rows:
        rec = wfdb.rdrecord(str(ecg_root / path))
        x = np.clip(np.nan_to_num(rec.p_signal), -3.0, 3.0)  # (5000, 12)
        y = resample(x, 1000, axis=0).T.astype(np.float32)  # (12, 1000)
        np.save(out / f"{study_id}.npy", y)
        n += 1
    return n


def ours(cohort: Path, ecg_root: Path, out: Path, workers: int, reader: str) -> int:
    from pipeline.data.shard import ShardConfig, shard_group

    cfg = ShardConfig(n_groups=1, shard_size=1024, fs_out=100, clip_mv=3.0, reader=reader)
    return shard_group(cohort, ecg_root, 0, out / "group_0", cfg, workers=workers).n_sharded


def check_cost(index: Path, repeats: int = 5) -> dict[str, float]:
    """Median seconds of the size check, the hash check and one read pass of ``index``."""
    import statistics

    from pipeline.data.ecg_store import ShardStore
    from pipeline.data.shard_check import check_hash, check_size, read_shard_entries

    n_records = len(ShardStore(index, hashes=False))
    entries = read_shard_entries(index) or {}
    rng = np.random.default_rng(0)

    def sizes() -> None:
        for name, entry in entries.items():
            check_size(index.parent / name, entry, index)

    def hashes() -> None:
        for name, entry in entries.items():
            check_hash(index.parent / name, entry, index)

    def read() -> None:
        fresh = ShardStore(index, hashes=False)  # maps opened as a new job opens them
        ids = rng.permutation(fresh.ids)
        for start in range(0, len(ids), 64):
            fresh.get_many(ids[start : start + 64])

    read()  # warm the page cache for every method alike
    out = {"records": float(n_records), "shards": float(len(entries))}
    out["bytes"] = float(sum(e.size for e in entries.values()))
    for name, fn in (("size", sizes), ("hash", hashes), ("read", read)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def print_check_cost(label: str, c: dict[str, float]) -> None:
    print(
        f"shard check {label}: {c['records']:.0f} records, {c['shards']:.0f} shard(s), "
        f"{c['bytes'] / 1e6:.1f} MB: sizes {1000 * c['size']:.1f} ms, SHA-256 "
        f"{1000 * c['hash']:.1f} ms, one read pass {1000 * c['read']:.1f} ms; "
        f"hash / read = {c['hash'] / c['read']:.2f}, sizes / read = {c['size'] / c['read']:.3f}"
    )


def child(args: argparse.Namespace) -> None:
    """Run one method in this (fresh) process and print a JSON line."""
    import logging

    import polars  # noqa: F401  imports before timing: both methods pay them once
    import scipy.signal  # noqa: F401
    import wfdb  # noqa: F401

    import pipeline.data.shard  # noqa: F401

    logging.disable(logging.INFO)
    cohort, root, out = Path(args.cohort), Path(args.root), Path(args.out)
    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    if args.method == "baseline":
        n = baseline(cohort, root, out)
    else:
        n = ours(cohort, root, out, args.workers, args.reader)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    rss = _peak_rss_mb()
    # forked workers: their peak counts pages shared with the parent at fork time
    rss_workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": n, "seconds": seconds, "cpu": cpu, "rss_mb": rss,
                      "worker_rss_mb": rss_workers}))  # fmt: skip


def run(
    method: str, cohort: Path, root: Path, out: Path, workers: int = 1, reader: str = ""
) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--cohort", str(cohort), "--root",
           str(root), "--out", str(out), "--workers", str(workers), "--reader",
           reader or "native"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"{method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", default=None)
    ap.add_argument("--cohort"), ap.add_argument("--root"), ap.add_argument("--out")
    ap.add_argument("--reader", default="native")
    ap.add_argument("--index", type=Path, help="only measure the shard check of this index")
    ap.add_argument("--repeats", type=int, default=5, help="shard check: median of N")
    args = ap.parse_args()
    if args.child:
        args.method = args.child
        child(args)
        return
    if args.index:
        print_check_cost(str(args.index), check_cost(args.index, args.repeats))
        return
    import polars as pl

    from pipeline.data.shard import merge_shard_groups

    variants = [
        ("baseline", "baseline", 1, ""),
        ("ours wfdb-reader 1 proc", "ours", 1, "wfdb"),
        ("ours 1 proc", "ours", 1, "native"),
        (f"ours {args.workers} procs", "ours", args.workers, "native"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        full = generate(tmp_path, max(args.sizes))
        print(f"generated {max(args.sizes)} records in {time.perf_counter() - t0:.1f} s")
        print(f"{'records':>8} {'method':<26} {'rec/s':>7} {'CPU ms/rec':>10} {'RSS MB':>7} "
              f"{'worker MB':>9} {'speed x':>7} {'CPU x':>6} {'RSS x':>6}")  # fmt: skip
        checked: list[tuple[int, Path]] = []
        for n in args.sizes:
            cohort = tmp_path / f"cohort_{n}.parquet"
            pl.read_parquet(full).sort("study_id").head(n).write_parquet(cohort)
            base = None
            for i, (name, method, workers, reader) in enumerate(variants):
                r = run(
                    method, cohort, tmp_path / "ecg", tmp_path / f"out_{n}_{i}", workers, reader
                )
                assert r["n"] == n, (name, r)
                rate, cpu_ms = n / r["seconds"], 1000 * r["cpu"] / n
                base = base or (rate, cpu_ms, r["rss_mb"])
                print(f"{n:>8} {name:<26} {rate:>7.0f} {cpu_ms:>10.2f} {r['rss_mb']:>7.0f} "
                      f"{r['worker_rss_mb']:>9.0f} {rate / base[0]:>7.1f} "
                      f"{base[1] / cpu_ms:>6.1f} {r['rss_mb'] / base[2]:>6.2f}")  # fmt: skip
            checked.append((n, tmp_path / f"out_{n}_2"))  # "ours 1 proc"
        for n, out in checked:
            merge_shard_groups([out / "group_0"], out / "index.parquet", out / "quarantine.tsv")
            print_check_cost(f"at {n}", check_cost(out / "index.parquet", args.repeats))


if __name__ == "__main__":
    main()
