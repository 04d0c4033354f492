"""Per-job throughput of a finished pipeline run, from its Snakemake benchmark tables.

Every heavy rule writes ``<results>/benchmarks/<job>.tsv`` (wall s, CPU s, peak RSS). This
script joins them with what each job processed (rows converted, ECG records, training
samples) and prints one Markdown table, the raw material of docs/scaling.md::

    python bench/scaling.py /tmp/run/results [--n-groups 2]

Throughput is work / wall; on a shared machine also read the CPU column (CPU s per unit
does not depend on other jobs). Training rows count train samples x epochs run over the
whole job (validation passes and start-up included), so they understate the step rate.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline.registry import model_names

# Benchmark file stem -> (model, id list): pretrain, and train_<model> (rule train_model).
TRAIN_STAGES = {"pretrain": ("pretrain", "train")} | {
    f"train_{name}": (name, "train") for name in model_names()
}


def _bench(path: Path) -> dict[str, float]:
    with path.open() as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))
    return {"s": float(row["s"]), "cpu_s": float(row["cpu_time"]), "rss_mb": float(row["max_rss"])}


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def _ids(res: Path, part: str) -> int:
    return _rows(res / "splits" / f"{part}_ids.parquet")


def _epochs(res: Path, model: str) -> int:
    """Training epochs the stage ran (``history.tsv`` beside the weights; epoch 0 is the
    validation of the starting point, not a training epoch)."""
    path = res / "models" / model / "history.tsv"
    if not path.exists():
        return 0
    epochs = pl.read_csv(path, separator="\t")["epoch"]
    return int((epochs >= 1).sum())


def work_done(res: Path, job: str, n_groups: int) -> tuple[float, str]:
    """(units processed, unit name) by the job ``job`` of the run under ``res``."""
    cohort = _rows(res / "extract" / "cohort.parquet")
    if job == "synthesize_cohort":
        summary = json.loads((res / "synthetic" / "cohort.json").read_text())
        return summary["records_written"], "ECGs written"
    if job.startswith("convert_"):
        return _rows(res / "parquet" / f"{job.removeprefix('convert_')}.parquet"), "rows"
    if job.startswith("extract_"):
        return cohort, "cohort ECGs"
    if job.startswith("shard_ecg_"):
        index = pl.read_parquet(res / "shards" / "index.parquet", columns=["study_id"])
        group = int(job.rsplit("_", 1)[1])
        return int((index["study_id"] % n_groups == group).sum()), "records"
    if job in ("merge_shards", "make_splits"):
        return _rows(res / "shards" / "index.parquet"), "records"
    if job in TRAIN_STAGES:
        model, part = TRAIN_STAGES[job]
        return _ids(res, part) * max(_epochs(res, model), 1), "train samples"
    if job.startswith("evaluate_"):
        return _ids(res, "test"), "test records"
    return 0, ""


def table(res: Path, n_groups: int) -> list[str]:
    lines = [
        "| job | wall s | CPU s | peak RSS MB | work | per s (wall) | CPU ms per unit |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for path in sorted((res / "benchmarks").glob("*.tsv")):
        b, job = _bench(path), path.stem
        n, unit = work_done(res, job, n_groups)
        rate = f"{n / b['s']:,.0f}" if n and b["s"] > 0 else ""
        per = f"{1e3 * b['cpu_s'] / n:.3g}" if n else ""
        work = f"{n:,.0f} {unit}" if n else ""
        lines.append(
            f"| {job} | {b['s']:.1f} | {b['cpu_s']:.1f} | {b['rss_mb']:,.0f} | {work} | {rate} "
            f"| {per} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--n-groups", type=int, default=2, help="config shard.n_groups of the run")
    args = ap.parse_args()
    print("\n".join(table(args.results, args.n_groups)))


if __name__ == "__main__":
    main()
