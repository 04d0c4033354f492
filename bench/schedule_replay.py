"""The makespan a finished run would have had under the current rules' schedule (issue 24).

Replays the DAG of a run made before the probe was split per encoder (e.g. main at 01c25b0)
on ``--cores`` with: priorities by the work left on the longest chain
(``pipeline.priorities``, the default config), the single probe job replaced by one job per
encoder (each lasting its embedding + probes from the probe's log, plus ``--probe-start`` s
of start-up) and a 2 s table job, data-preparation jobs on 1 thread each (small inputs),
data preparation (label subsets and lab-target selection included) ahead of every training
job, and training jobs lasting ``--train-scale`` x their measured wall time (a faster training
step since the run). Every other job lasts its measured wall time. Usage::

    python bench/schedule_replay.py /tmp/lead_default --train-scale 1 0.8 0.75

Prints, per scale, the replayed makespan and the work / cores bound. Nothing is timed here.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_profile as rp

from pipeline.priorities import (
    EVALUATE,
    PROBE_ENCODER,
    PROBE_TABLE,
    REPORT,
    remaining_work,
    stage_cost,
)
from pipeline.registry import models

TRAINING = ("train_model", "pretrain", "pretrain_ecg_only")
DATA = ("convert", "shard_ecg", "extract_cohort", "extract_features", "extract_labels")
DATA += ("extract_lab_targets",)
PROBE_LINE = re.compile(r"probe: (\w+): embedded .* in ([\d.]+) s, probes in ([\d.]+) s")


def _config(repo: Path) -> dict:
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((repo / "config.yaml").read_text())
    validate(config, str(repo / "workflow/schemas/config.schema.yaml"))
    return config


def rescheduled(run: Path, log: Path, train_scale: float, probe_start: float) -> list[rp.Job]:
    """The run's jobs with the current schedule (see the module docstring)."""
    from pipeline.runs import Stages

    repo = Path(__file__).resolve().parents[1]
    config, table = _config(repo), models()
    stages = Stages(table, ["barlow_twins", "vicreg", "clip"])

    def cost(node: str) -> float:
        settings = stages.settings(config, node) | {"label_fraction": config["label_fraction"]}
        return stage_cost(node, settings, table)

    jobs = [j for j in rp.parse_snakemake_log(log) if j.end == j.end]
    rp.read_benchmarks(jobs, run / "results")
    by = {j.name: j for j in jobs}
    for j in jobs:
        if j.rule in TRAINING:
            j.end = j.start + j.wall * train_scale
            j.bench["cpu_time"] = j.wall
            j.priority = remaining_work(j.name.removeprefix("train_"), table, cost)
        elif j.rule == "evaluate":
            j.priority = EVALUATE + REPORT
        elif j.rule not in ("report", "export_model"):  # data preparation: ahead of all
            j.priority = 1e3
        if j.rule in DATA:
            j.threads, j.bench["cpu_time"] = 1, j.wall
    probe = by.pop("probe")
    jobs.remove(probe)
    ready = [*by["stage_ids"].outputs, *by["select_lab_targets"].outputs]
    first = max(j.jobid for j in jobs) + 1
    encoders = []
    for line in (run / "results/logs/probe.log").read_text().splitlines():
        if m := PROBE_LINE.search(line):
            name, took = m.group(1), float(m.group(2)) + float(m.group(3))
            source = by.get(name) or by.get(f"train_{name}")
            inputs = ready + (source.outputs if source else [])
            encoders.append(
                rp.Job(first + len(encoders), "probe_encoder", f"probe_{name}", 0.0,
                       took + probe_start, 1, PROBE_ENCODER + PROBE_TABLE, inputs,
                       [f"probe/{name}.npz"])
            )  # fmt: skip
    outputs = [e.outputs[0] for e in encoders]
    combine = rp.Job(first + 99, "probe", "probe", 0.0, 2.0, 1, PROBE_TABLE, outputs, probe.outputs)
    return [*jobs, *encoders, combine]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="the run's working directory")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--train-scale", type=float, nargs="+", default=[1.0])
    ap.add_argument("--probe-start", type=float, default=3.0, help="s per probe job")
    args = ap.parse_args(argv)
    log = sorted((args.run_dir / ".snakemake" / "log").glob("*.snakemake.log"))[-1]
    old = [j for j in rp.parse_snakemake_log(log) if j.end == j.end]
    rp.read_benchmarks(old, args.run_dir / "results")
    span = rp.replay(old, rp.dependencies(old), args.cores, 1, slowdown=1.0)
    print(f"# {log}\nas run (its priorities, one probe job): replay {span:.0f} s")
    for scale in args.train_scale:
        jobs = rescheduled(args.run_dir, log, scale, args.probe_start)
        span = rp.replay(jobs, rp.dependencies(jobs), args.cores, 1, slowdown=1.0)
        work = sum(j.wall for j in jobs)
        print(
            f"current schedule, training x{scale}: replay {span:.0f} s ({span / 60:.1f} min); "
            f"work {work:.0f} s / {args.cores} cores = {work / args.cores:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
