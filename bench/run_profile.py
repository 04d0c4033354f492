"""Where a finished pipeline run spent its time: per job, on the critical path, per epoch.

Reads what every run leaves behind: Snakemake's log of the run (``.snakemake/log/*.log``:
each job's start, end, threads, inputs and outputs, hence the DAG), the benchmark tables
(``results/benchmarks/*.tsv``: wall and CPU seconds, peak memory), the job logs
(``results/logs/*.log``: a timestamp per training epoch) and each model's ``history.tsv``
and ``model.json`` (epochs run, best epoch, cap). Usage::

    python bench/run_profile.py RUN_DIR              # RUN_DIR holds results/ and .snakemake/
    python bench/run_profile.py RUN_DIR --cores 2 --threads 1

Prints (1) the jobs: wall, CPU, cores used (CPU / wall), peak memory; (2) the critical path
of the DAG by wall time; (3) a replay of the DAG on ``--cores`` with every job that ran
on more than ``--threads`` threads moved to ``--threads``, giving a makespan bracket:
each such job lasting its measured wall time (no loss from fewer threads) to its CPU time
(each extra thread was fully useful); (4) the epoch accounting of every training job.
Nothing is timed here: the numbers are the run's own.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from graphlib import TopologicalSorter
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")
FIELD = re.compile(r"^    (input|output|log|jobid|benchmark|wildcards|threads|priority): (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
EPOCH = re.compile(r"pipeline\.train\.engine: (.+?) epoch (\d+)/(\d+):")


@dataclass
class Job:
    """One job of the run, from Snakemake's log (times in seconds from the run's start)."""

    jobid: int
    rule: str
    name: str  # the job log's name (train_signal_only), else the rule
    start: float
    end: float = float("nan")
    threads: int = 1
    priority: float = 0.0  # the rule's Snakemake priority (logged when not 0)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    bench: dict[str, float] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.end - self.start

    @property
    def cpu(self) -> float:
        """CPU seconds (benchmark), else the wall time of a 1-thread job."""
        return self.bench.get("cpu_time", self.wall)


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%a %b %d %H:%M:%S %Y")


def parse_snakemake_log(path: Path) -> list[Job]:
    """Every executed job (not the target rule ``all``), with its start and end."""
    jobs: dict[int, Job] = {}
    t0: datetime | None = None
    stamp: datetime | None = None
    current: dict[str, str] = {}
    rule = ""
    for line in path.read_text().splitlines():
        if m := STAMP.match(line):
            stamp = _time(m.group(1))
            t0 = t0 or stamp
            current, rule = {}, ""
        elif (m := re.match(r"^(?:local)?rule (\w+):$", line)) and stamp is not None:
            rule = m.group(1)
        elif (m := FIELD.match(line)) and rule and stamp is not None and t0 is not None:
            key, value = m.groups()
            current[key] = value
            if key == "jobid" and rule != "all":  # input, output and log come before it
                job = jobs[int(value)] = Job(int(value), rule, rule, (stamp - t0).total_seconds())
                for k, v in current.items():
                    _fill(job, k, v)
            elif "jobid" in current and int(current["jobid"]) in jobs:
                _fill(jobs[int(current["jobid"])], key, value)
        elif (m := FINISHED.match(line)) and int(m.group(1)) in jobs and stamp and t0:
            jobs[int(m.group(1))].end = (stamp - t0).total_seconds()
    return sorted(jobs.values(), key=lambda j: (j.start, j.jobid))


def _fill(job: Job, key: str, value: str) -> None:
    files = [v.strip() for v in value.split(",") if v.strip()]
    if key == "input":
        job.inputs = files
    elif key == "output":
        job.outputs = files
    elif key == "threads":
        job.threads = int(value)
    elif key == "priority":
        job.priority = float(value)
    elif key == "log" and files:
        job.name = Path(files[0]).stem


def read_benchmarks(jobs: list[Job], results: Path) -> None:
    """Attach each job's benchmark row (``results/benchmarks/<job log name>.tsv``)."""
    for job in jobs:
        tsv = results / "benchmarks" / f"{job.name}.tsv"
        if tsv.is_file():
            rows = list(csv.DictReader(tsv.open(), delimiter="\t"))
            if rows:
                job.bench = {k: float(v) for k, v in rows[-1].items() if k != "h:m:s"}


def dependencies(jobs: list[Job]) -> dict[int, set[int]]:
    """jobid -> the jobids whose outputs (files, or directories holding them) it reads."""
    owner = {out: j.jobid for j in jobs for out in j.outputs}
    deps: dict[int, set[int]] = {}
    for job in jobs:
        deps[job.jobid] = set()
        for path in job.inputs:
            parts = Path(path).parts
            for k in range(len(parts), 0, -1):  # the file itself, then its directories
                src = owner.get(str(Path(*parts[:k])))
                if src is not None and src != job.jobid:
                    deps[job.jobid].add(src)
                    break
    return deps


def critical_path(jobs: list[Job], deps: dict[int, set[int]]) -> tuple[float, list[Job]]:
    """The longest chain of dependent jobs by wall time (what no core count shortens)."""
    by_id = {j.jobid: j for j in jobs}
    best: dict[int, tuple[float, int | None]] = {}
    for jobid in TopologicalSorter(deps).static_order():
        job = by_id[jobid]
        prev = max(deps[job.jobid], key=lambda d: best[d][0], default=None)
        best[job.jobid] = (job.wall + (best[prev][0] if prev is not None else 0.0), prev)
    end = max(best, key=lambda i: best[i][0])
    chain: list[Job] = []
    cur: int | None = end
    while cur is not None:
        chain.append(by_id[cur])
        cur = best[cur][1]
    return best[end][0], chain[::-1]


def replay(
    jobs: list[Job],
    deps: dict[int, set[int]],
    cores: int,
    threads: int,
    slowdown: float | None = None,
) -> float:
    """Makespan of the DAG list-scheduled on ``cores`` as Snakemake does: of the jobs whose
    inputs are done, higher priority first, then the run's start order. A job that ran on
    more than ``threads`` threads reserves ``threads`` cores and lasts its wall time times
    ``slowdown``, at most its CPU time (None: its CPU time, all extra threads useful)."""
    order = sorted(jobs, key=lambda j: (-j.priority, j.start, j.jobid))
    need = {j.jobid: min(j.threads, threads, cores) for j in jobs}
    dur = {
        j.jobid: j.wall
        if j.threads <= threads
        else (j.cpu if slowdown is None else min(j.cpu, j.wall * slowdown))
        for j in jobs
    }
    done: set[int] = set()
    running: list[tuple[float, int]] = []
    free, now = cores, 0.0
    pending = [j.jobid for j in order]
    while pending or running:
        for i in [i for i in pending if deps[i] <= done]:
            if need[i] <= free:
                heapq.heappush(running, (now + dur[i], i))
                free -= need[i]
                pending.remove(i)
        if not running:
            raise ValueError(f"jobs {pending[:3]} wait on jobs that never ran")
        now, i = heapq.heappop(running)
        done.add(i)
        free += need[i]
    return now


def epoch_table(results: Path, jobs: list[Job]) -> list[dict[str, object]]:
    """Per training job: epochs run, cap, best, epochs after the best, mean epoch seconds."""
    rows = []
    for job in jobs:
        log = results / "logs" / f"{job.name}.log"
        model = job.name.removeprefix("train_")
        hist = results / "models" / model / "history.tsv"
        if not (log.is_file() and hist.is_file()):
            continue
        times: list[tuple[float, int, int]] = []
        for line in log.read_text().splitlines():
            t, e = LOG_TIME.match(line), EPOCH.search(line)
            if t and e and e.group(1) == model:
                stamp = datetime.strptime(t.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                times.append((stamp, int(e.group(2)), int(e.group(3))))
        if len(times) < 2:
            continue
        epoch_s = (times[-1][0] - times[0][0]) / (times[-1][1] - times[0][1])
        meta = json.loads((results / "models" / model / "model.json").read_text())
        best = int(meta.get("best_epoch", 0))
        ran, cap = times[-1][1], times[-1][2]
        rows.append(
            {
                "job": job.name,
                "wall": job.wall,
                "epochs": f"{ran}/{cap}",
                "best": best,
                "after_best": ran - best,
                "epoch_s": epoch_s,
                "epochs_s": epoch_s * ran,
                "after_best_s": epoch_s * (ran - best),
                "other_s": job.wall - epoch_s * ran,
            }
        )
    return rows


def _print_table(rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    cells = [[f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "run_dir", type=Path, help="the run's working directory (results/, .snakemake/)"
    )
    ap.add_argument("--results", default="results", help="results directory inside run_dir")
    ap.add_argument("--log", type=Path, help="Snakemake's log (default: the newest)")
    ap.add_argument("--cores", type=int, default=2, help="cores of the replay")
    ap.add_argument("--threads", type=int, default=1, help="threads per job in the replay")
    ap.add_argument(
        "--slowdown",
        type=float,
        default=1.1,
        help="a job moved to fewer threads lasts its wall time times this (capped at its CPU)",
    )
    args = ap.parse_args(argv)
    results = args.run_dir / args.results
    logs = sorted((args.run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    log = args.log or (logs[-1] if logs else None)
    if log is None or not log.is_file():
        ap.error(f"{args.run_dir}/.snakemake/log: no Snakemake log; pass --log")
    jobs = [j for j in parse_snakemake_log(log) if j.end == j.end]  # finished jobs only
    if not jobs:
        ap.error(f"{log}: no finished job")
    read_benchmarks(jobs, results)
    deps = dependencies(jobs)
    span = max(j.end for j in jobs)
    busy = sum(j.cpu for j in jobs)
    print(f"# {log}: {len(jobs)} jobs, {span:.0f} s from first start to last end\n")
    _print_table(
        [
            {
                "job": j.name,
                "start": j.start,
                "wall": j.wall,
                "threads": j.threads,
                "cpu": j.bench.get("cpu_time", float("nan")),
                "cores_used": j.bench.get("cpu_time", float("nan")) / j.wall
                if j.wall >= 1
                else float("nan"),
                "rss_mb": j.bench.get("max_rss", float("nan")),
            }
            for j in sorted(jobs, key=lambda j: -j.wall)
        ]
    )
    print(
        f"\nsum of walls {sum(j.wall for j in jobs):.0f} s, CPU {busy:.0f} s (jobs without a "
        f"benchmark counted at 1 core): {busy / span:.2f} of {args.cores} cores busy on average"
    )
    length, chain = critical_path(jobs, deps)
    print(f"\n\n## critical path: {length:.0f} s of {span:.0f} s")
    print(" -> ".join(f"{j.name} ({j.wall:.0f})" for j in chain if j.wall >= 1))
    low = replay(jobs, deps, args.cores, args.threads, slowdown=1.0)
    mid = replay(jobs, deps, args.cores, args.threads, slowdown=args.slowdown)
    high = replay(jobs, deps, args.cores, args.threads)
    print(
        f"\n## replay on {args.cores} cores, at most {args.threads} thread(s) per job "
        f"(measured {span:.0f} s): {low:.0f} s if fewer threads cost nothing, {mid:.0f} s "
        f"({mid / 60:.1f} min) at {args.slowdown}x wall, {high:.0f} s at CPU time"
    )
    print("\n## epochs (mean epoch = training + validation, from the job log's timestamps)")
    _print_table(epoch_table(results, jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
