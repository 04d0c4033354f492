"""What `snakemake regime` costs: its training jobs priced by a finished run's benchmarks.

Counts, from the run plan (pipeline/runs.py, no Snakemake start), the stage-1 and model
trainings and evaluations the regime adds to a finished default run, the cohorts of worlds
other than the config's (synthesis, conversion, extraction, shards, splits), and prices each
with the wall time of the same job in ``results/benchmarks/*.tsv`` (column ``s``). Jobs run
one after another, as training jobs do on 2 cores (each takes every core); a smaller label
fraction trains on fewer records, so the figure is an upper bound. The benchmarks' machine
must have been idle for the figure to mean anything.

    python bench/regime_cost.py <finished run>/results/benchmarks [config.yaml]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import polars as pl
import yaml
from snakemake.utils import validate

from pipeline.registry import PRETRAINED, models
from pipeline.runs import Plan, Stages, regime_runs

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = ("synthesize_cohort", "convert_*", "extract_*", "shard_ecg_*", "merge_shards")


def wall(bench: Path, pattern: str) -> float:
    """Summed wall seconds of the benchmark files matching ``pattern``."""
    files = sorted(bench.glob(f"{pattern}.tsv"))
    if not files:
        raise SystemExit(f"{bench}: no benchmark {pattern}.tsv")
    return sum(float(pl.read_csv(f, separator="\t")["s"][0]) for f in files)


def main(bench: Path, config_path: Path) -> None:
    config = yaml.safe_load(config_path.read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    objectives = schema["properties"]["pretrain"]["properties"]["objective"]["enum"]
    stages = Stages(models(), objectives)
    runs = regime_runs(config, stages)
    plan = Plan.of(config, stages, runs)
    wanted = [*PRETRAINED, *config["regime"]["models"]]
    jobs = {(plan.owner(r.prefix, n), n) for r in runs for n in wanted} - {("", n) for n in wanted}
    per_node = Counter(node for _, node in jobs)
    seconds = {
        n: k * wall(bench, f"train_{n}" if n not in PRETRAINED else n) for n, k in per_node.items()
    }
    models_n = sum(k for n, k in per_node.items() if n not in PRETRAINED)
    evals = sum(per_node[n] * wall(bench, f"evaluate_{n}") for n in per_node if n not in PRETRAINED)
    worlds = len(plan.datasets) - 1
    upstream = worlds * sum(wall(bench, p) for p in UPSTREAM)
    total = sum(seconds.values()) + evals + upstream
    print(f"jobs: {dict(per_node)} ({models_n} model trainings and evaluations)")
    print(f"cohorts of other worlds: {worlds} ({upstream / 3600:.2f} h)")
    for node, s in seconds.items():
        print(f"  {node}: {per_node[node]} x {s / per_node[node] / 60:.1f} min = {s / 3600:.2f} h")
    print(f"evaluations: {evals / 3600:.2f} h")
    print(f"total (one job at a time): {total / 3600:.1f} h")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "config.yaml")
