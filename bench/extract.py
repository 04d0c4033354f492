"""Benchmark: our streaming extraction vs a straightforward pandas implementation.

For each labevents size (default 2M and 20M rows) the script generates a synthetic
cohort in the MIMIC layout (``pipeline.synth.synthesize_cohort`` with extra outpatient
lab draws, about 500 lab rows per subject as in MIMIC-IV), builds the ED cohort once
(untimed, shared by both contenders), then times in fresh subprocesses:

- ours: ``convert_table`` of labevents + d_labitems (streamed csv.gz -> parquet, as the
  pipeline runs it: projection on, ISA-L inflater, parallel parsing) and
  ``extract_features`` (all MDS-ED features, lab statistics included);
- before: the same with the converter of main before issue 11 (Arrow's streaming reader
  and zlib, all columns; ``convert_parts.convert_before``);
- pandas: ``pd.read_csv`` of the whole labevents and d_labitems, most frequent fluid per
  label, merge with the cohort's stays, window filter, vectorised groupby statistics
  (the same 9 per lab), pivot, write parquet.

Each child reports its wall time and its own peak RSS (``getrusage(RUSAGE_SELF)``);
the lab statistics of ours and pandas are compared. A last child measures the parts of
the conversion alone (``bench/convert_parts.py``: inflate, tokenise, type, encode, and
the inflate + tokenise pipe that is our conversion's ceiling). Usage::

    python bench/extract.py                      # 2M and 20M rows
    python bench/extract.py --sizes 200000 2000000 --workdir /tmp/bench
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS_PER_SUBJECT = 500  # labevents rows per subject in MIMIC-IV (158 M / ~300 k)
PILOT_SUBJECTS = 400
WINDOW_MIN = 90
STATS = ("mean", "median", "min", "max", "std", "first", "last", "rate_change", "coeff")
SMALL_TABLES = (
    "record_list",
    "patients",
    "admissions",
    "omr",
    "diagnoses_icd",
    "edstays",
    "triage",
    "vitalsign",
    "diagnosis",
)


def _synth(root: Path, n_subjects: int, extra: int) -> dict:
    from pipeline.synth import SynthConfig, synthesize_cohort

    cfg = SynthConfig(seed=0, n_subjects=n_subjects, extra_lab_draws=extra, write_waveforms=False)
    s = synthesize_cohort(
        cfg, root / "mimic-iv", root / "mimic-iv-ed", root / "mimic-iv-ecg", root / "gt.parquet"
    )
    return s.as_dict()


def generate(workdir: Path, rows: int) -> Path:
    """A synthetic source tree whose labevents has about ``rows`` rows."""
    src = workdir / f"src_{rows}"
    if (src / "done.json").exists():
        return src
    base = _synth(workdir / "pilot0", PILOT_SUBJECTS, 0)["rows"]["labevents"]
    more = _synth(workdir / "pilot1", PILOT_SUBJECTS, 1)["rows"]["labevents"]
    n_subjects = max(PILOT_SUBJECTS, rows // ROWS_PER_SUBJECT)
    per_subject, per_draw = base / PILOT_SUBJECTS, max(more - base, 1) / PILOT_SUBJECTS
    extra = max(0, math.ceil((rows / n_subjects - per_subject) / per_draw))
    t0 = time.monotonic()
    summary = _synth(src, n_subjects, extra)
    summary["generate_s"] = time.monotonic() - t0
    (src / "done.json").write_text(json.dumps(summary))
    return src


def prepare(src: Path, work: Path) -> dict[str, Path]:
    """Untimed: convert the small tables and build the cohort both contenders use."""
    from pipeline.data.cohort import CohortConfig, extract_cohort
    from pipeline.data.convert import convert_table
    from pipeline.mimic_schema import TABLES

    roots = {"mimic_iv": src / "mimic-iv", "mimic_iv_ed": src / "mimic-iv-ed"}
    roots["mimic_iv_ecg"] = src / "mimic-iv-ecg"
    paths = {}
    for t in SMALL_TABLES:
        paths[t] = work / "parquet" / f"{t}.parquet"
        convert_table(t, TABLES[t].path(roots[TABLES[t].dataset]), paths[t], 1_000_000)
    cohort_tables = {t: paths[t] for t in SMALL_TABLES}
    extract_cohort(cohort_tables, work / "cohort.parquet", CohortConfig(WINDOW_MIN))
    return paths


# --- contenders (run in child processes) -------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ours(src: Path, work: Path, before: bool = False) -> dict:
    from convert_parts import convert_before

    from pipeline.data.convert import ConvertConfig, convert_table
    from pipeline.data.features import FeatureConfig, extract_features

    cfg, out = ConvertConfig(), work / ("before" if before else "ours")
    tables = {t: work / "parquet" / f"{t}.parquet" for t in SMALL_TABLES}
    t0, c0 = time.monotonic(), _cpu()
    for t in ("labevents", "d_labitems"):
        tables[t], source = out / f"{t}.parquet", src / "mimic-iv" / "hosp" / f"{t}.csv.gz"
        if before:
            convert_before(t, source, tables[t])
        else:  # the config defaults, as rule convert runs it
            convert_table(t, source, tables[t], cfg.batch_rows, projection=cfg.projection)
    t1, c1 = time.monotonic(), _cpu()
    extract_features(
        work / "cohort.parquet",
        tables,
        out / "features.parquet",
        out / "manifest.tsv",
        FeatureConfig(window_minutes=WINDOW_MIN),
    )
    t2, c2 = time.monotonic(), _cpu()
    return {
        "convert_s": t1 - t0,
        "convert_cpu_s": c1 - c0,
        "features_s": t2 - t1,
        "features_cpu_s": c2 - c1,
    }


def run_pandas(src: Path, work: Path) -> dict:
    """Read whole tables, merge, group: what a straightforward implementation does."""
    import numpy as np
    import pandas as pd

    from pipeline.data.labs import PLAUSIBLE
    from pipeline.mimic_schema import PROTOCOL_LABS

    hosp = src / "mimic-iv" / "hosp"
    ev = pd.read_csv(hosp / "labevents.csv.gz", parse_dates=["charttime", "storetime"])
    items = pd.read_csv(hosp / "d_labitems.csv.gz")
    ev = ev.merge(items[["itemid", "label", "fluid"]], on="itemid")
    ev = ev[ev.label.isin(PROTOCOL_LABS)]
    size = ev.groupby(["label", "fluid"]).size().reset_index(name="n")
    size = size.sort_values(["label", "n", "fluid"], ascending=[True, False, True])
    ev = ev.merge(size.drop_duplicates("label")[["label", "fluid"]], on=["label", "fluid"])
    cohort = pd.read_parquet(work / "cohort.parquet")
    stays = cohort[["stay_id", "subject_id", "intime"]].drop_duplicates()
    m = ev.merge(stays, on="subject_id")
    m = m[(m.charttime >= m.intime) & (m.charttime <= m.intime + pd.Timedelta(minutes=WINDOW_MIN))]
    lo = m.label.map(lambda x: PLAUSIBLE.get(x, (0.0, None))[0]).astype(float).fillna(-np.inf)
    hi = m.label.map(lambda x: PLAUSIBLE.get(x, (0.0, None))[1]).astype(float).fillna(np.inf)
    m = m[m.valuenum.notna() & (m.valuenum >= lo) & (m.valuenum <= hi)].copy()
    m["t"] = (m.charttime - m.intime).dt.total_seconds() / 60
    m = m.sort_values(["stay_id", "label", "t", "valuenum"])
    m["tv"], m["tt"] = m.t * m.valuenum, m.t * m.t
    g = m.groupby(["stay_id", "label"])
    s = g.valuenum.agg(["mean", "median", "min", "max", "std", "first", "last", "count"])
    sums = g[["t", "tv", "tt"]].sum()
    n = s["count"]
    var_t = (sums.tt - sums.t**2 / n) / (n - 1)
    cov = (sums.tv - sums.t * s["mean"]) / (n - 1)
    s["coeff"] = (cov / var_t).where(var_t > 1e-9)
    s["rate_change"] = ((s["last"] - s["first"]) / s["first"]).where(s["first"] != 0)
    wide = s[list(STATS)].unstack("label")
    wide.columns = [f"{lab}|{stat}" for stat, lab in wide.columns]
    out = cohort[["study_id", "stay_id"]].merge(wide.reset_index(), on="stay_id", how="left")
    out.drop(columns="stay_id").to_parquet(work / "pandas_features.parquet")
    return {}


def child(which: str, src: Path, work: Path) -> None:
    # If memory runs out, the kernel should kill this benchmark child, not a neighbour.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    t0 = time.monotonic()
    if which == "parts":
        from convert_parts import measure as measure_parts

        phases = measure_parts(src / "mimic-iv" / "hosp" / "labevents.csv.gz", work)
    elif which == "pandas":
        phases = run_pandas(src, work)
    else:
        phases = run_ours(src, work, before=which == "before")
    seconds = time.monotonic() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime  # robust to other load on a shared machine
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_mb": peak, **phases}))


# --- driver ------------------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def measure(which: str, src: Path, work: Path, cap_mb: float) -> dict:
    """Run one contender in a fresh process; kill it if its RSS passes ``cap_mb`` (so a
    whole-table pandas run cannot push a shared machine into the OOM killer)."""
    cmd = [sys.executable, __file__, "--child", which, "--src", str(src), "--work", str(work)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = cpu = 0.0
    while proc.poll() is None:
        seen, cpu = max(seen, _rss_mb(proc.pid)), max(cpu, _cpu_s(proc.pid))
        if seen > cap_mb:
            proc.kill()
            proc.wait()
            # what it used until killed: lower bounds of what it needs
            return {"killed": True, "seconds": time.monotonic() - t0, "cpu_s": cpu, "peak_mb": seen}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{which} failed:\n{err[-4000:]}")
    return json.loads(out.strip().splitlines()[-1])


def compare(work: Path) -> float:
    """Largest relative difference between our and pandas' lab statistics."""
    import numpy as np
    import polars as pl

    from pipeline.data.features import lab_prefix

    ours = pl.read_parquet(work / "ours" / "features.parquet").sort("study_id")
    ref = pl.read_parquet(work / "pandas_features.parquet").sort("study_id")
    worst = 0.0
    for col in ref.columns[1:]:
        lab, stat = col.split("|")
        a = ours[f"{lab_prefix(lab)}_{stat}"].to_numpy().astype(float)
        b = ref[col].to_numpy().astype(float)
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            raise AssertionError(f"{col}: missing values differ between ours and pandas")
        ok = ~np.isnan(a)
        if ok.any():
            rel = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-6)
            worst = max(worst, float(rel.max()))
    return worst


def _fmt(r: dict, n_rows: int) -> str:
    if r.get("killed"):
        return (
            f"killed at {r['peak_mb']:,.0f} MB after {r['seconds']:.0f} s "
            f"({r.get('cpu_s', 0):.0f} s cpu), not finished"
        )
    return (
        f"{r['seconds']:.1f} s wall, {r['cpu_s']:.1f} s cpu, {n_rows / r['seconds']:,.0f} rows/s, "
        f"peak RSS {r['peak_mb']:,.0f} MB"
    )


def _phases(r: dict) -> str:
    return (
        f"         convert {r['convert_s']:.1f} s ({r['convert_cpu_s']:.1f} cpu), "
        f"extract_features {r['features_s']:.1f} s ({r['features_cpu_s']:.1f} cpu)"
    )


def report_parts(parts: dict, ours: dict, before: dict, n_rows: int) -> None:
    """Conversion CPU by part (measured alone) and our rate against the ceiling."""
    tok, base = parts["tokenise"], parts["tokenise_stream"]
    tok_stream = base["cpu_s"] - base["encode_cpu_s"]
    rows = []
    for label, inflate, typed in (("before", "zlib", "all"), ("after", "isal", "projection")):
        t = parts[f"typed_{typed}"]
        enc = t["encode_cpu_s"]
        typ = t["cpu_s"] - enc - tok_stream
        rows.append((label, parts[f"inflate_{inflate}"]["cpu_s"], typ, enc))
    print(
        f"conversion CPU s by part, each alone ({parts['inflated_mb']:,.0f} MB inflated; "
        "tokenise: Arrow's streaming reader, one column)"
    )
    print("         inflate   tokenise   type   parquet   sum  | measured convert (2 tables)")
    for (label, inf, typ, enc), run in zip(rows, (before, ours), strict=True):
        total = inf + tok_stream + typ + enc
        print(
            f"  {label:6s} {inf:7.2f} {tok_stream:9.2f} {typ:7.2f} {enc:8.2f} {total:6.2f}  | "
            f"{run['convert_cpu_s']:.1f} cpu, {run['convert_s']:.1f} s wall"
        )
    inf = parts["inflate_isal"]
    pipe = parts["pipe"]
    print(
        f"ceiling: inflate alone {inf['s']:.1f} s ({inf['cpu_s']:.1f} cpu), tokenise alone "
        f"{tok['s']:.1f} s ({tok['cpu_s']:.1f} cpu), inflate|tokenise pipe {pipe['s']:.1f} s "
        f"({pipe['cpu_s']:.1f} cpu) = {n_rows / pipe['s']:,.0f} rows/s"
    )
    print(
        f"ours vs ceiling: {pipe['s'] / ours['convert_s']:.0%} of the pipe's rate (wall), "
        f"{(inf['cpu_s'] + tok['cpu_s']) / ours['convert_cpu_s']:.0%} in CPU "
        f"(inflate + tokenise cpu / our convert cpu); before: "
        f"{pipe['s'] / before['convert_s']:.0%} wall, "
        f"{(inf['cpu_s'] + tok['cpu_s']) / before['convert_cpu_s']:.0%} cpu"
    )


def report(results: list[tuple[int, int, dict, dict]]) -> None:
    for n_rows, n_ecgs, r, diff in results:
        o, b, p = r["ours"], r["before"], r["pandas"]
        print(f"\n== labevents {n_rows:,} rows, cohort {n_ecgs:,} ECGs")
        print(f"ours   : {_fmt(o, n_rows)}")
        print(_phases(o))
        print(f"before : {_fmt(b, n_rows)}")
        print(_phases(b))
        print(f"pandas : {_fmt(p, n_rows)}")
        print(
            f"ratios : ours vs before {b['seconds'] / o['seconds']:.1f}x wall, "
            f"{b['cpu_s'] / o['cpu_s']:.1f}x cpu (convert alone "
            f"{b['convert_s'] / o['convert_s']:.1f}x wall, "
            f"{b['convert_cpu_s'] / o['convert_cpu_s']:.1f}x cpu)"
        )
        at_least = ">" if p.get("killed") else ""  # a killed run gives lower bounds
        for name, x in (("ours", o), ("before", b)):
            print(
                f"         pandas / {name}: {at_least}{p['seconds'] / x['seconds']:.1f}x wall, "
                f"{at_least}{p['cpu_s'] / x['cpu_s']:.1f}x cpu, "
                f"peak RSS {at_least}{p['peak_mb'] / x['peak_mb']:.1f}x"
            )
        if diff is not None:
            print(f"         max rel diff of lab stats ours vs pandas {diff:.1e}")
        if "parts" in r:
            report_parts(r["parts"], o, b, n_rows)
    if len(results) > 1:
        (r0, _, x0, _), (r1, _, x1, _) = results[0], results[-1]
        rss = x1["ours"]["peak_mb"] / x0["ours"]["peak_mb"]
        print(f"\nour peak RSS grows {rss:.2f}x for {r1 / r0:.1f}x rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 20_000_000])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ecg_explain_bench"))
    ap.add_argument(
        "--cap-mb",
        type=float,
        default=None,
        help="kill a contender above this RSS "
        "(default: 80%% of MemAvailable at the start of each run)",
    )
    ap.add_argument("--no-parts", action="store_true", help="skip the conversion breakdown")
    ap.add_argument("--child", choices=["ours", "before", "pandas", "parts"])
    ap.add_argument("--src", type=Path)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.src, args.work)
        return
    results = []
    for rows in args.sizes:
        src = generate(args.workdir, rows)
        meta = json.loads((src / "done.json").read_text())
        n_rows = meta["rows"]["labevents"]
        work = args.workdir / f"work_{rows}"
        prepare(src, work)
        runs = {}
        for which in ("ours", "before", "pandas") + (() if args.no_parts else ("parts",)):
            runs[which] = measure(which, src, work, args.cap_mb or 0.8 * _available_mb())
        killed = runs["pandas"].get("killed") or runs["ours"].get("killed")
        diff = None if killed else compare(work)
        results.append((n_rows, meta["ecgs"], runs, diff))
        report(results[-1:])
    report(results)


if __name__ == "__main__":
    main()
