"""Fault injection through the snakemake command line, on the tiny cohort laid out as a
real PhysioNet download (``source.synthetic: false``).

Each fault must stop the first stage that sees it, with counts and the config key to
change, in the console (one line, no traceback) and in the job's log file (with the
traceback), and leave no output that Snakemake would count as finished.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.snakemake_helpers import REPO, planned_rules, snakemake

TEST_CONFIG = REPO / ".test/config.yaml"
DATASETS = ("mimic_iv", "mimic_iv_ed", "mimic_iv_ecg")


@pytest.fixture(scope="module")
def tiny_download(tiny_synthetic: Path) -> dict[str, Path]:
    """The tiny synthetic cohort as the three PhysioNet dataset roots."""
    root = tiny_synthetic / "results/synthetic"
    return {key: root / key.replace("_", "-") for key in DATASETS}


def _config(workdir: Path, sources: dict[str, Path], **sections: dict) -> Path:
    config = {"source": {"synthetic": False, **{k: str(v) for k, v in sources.items()}}}
    config.update(sections)
    path = workdir / "faults.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _failed(workdir: Path, config: Path, *targets: str) -> str:
    proc = snakemake(
        workdir, TEST_CONFIG, str(config), "--cores", "2", "--keep-going", *targets, check=False
    )
    assert proc.returncode != 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _log(workdir: Path, job: str) -> str:
    return (workdir / "results/logs" / f"{job}.log").read_text()


def _assert_reason_logged(workdir: Path, job: str, reason: str) -> None:
    """The job log holds the reason on a CRITICAL line and the traceback that raised it."""
    text = _log(workdir, job)
    assert re.search(rf"CRITICAL .*TooLittleData: .*{re.escape(reason)}", text), text[-2000:]
    assert "Traceback (most recent call last)" in text
    last = text.rstrip().splitlines()[-1]  # the traceback ends with the exception itself
    assert last.startswith("pipeline.data.checks.TooLittleData: ") and reason in last


def _shift_ed_stays(src: Path, dst: Path, days: int) -> Path:
    """A copy of the ED dataset whose stays all start ``days`` later (other tables linked)."""
    (dst / "ed").mkdir(parents=True)
    for table in (src / "ed").iterdir():
        if table.name != "edstays.csv.gz":
            (dst / "ed" / table.name).symlink_to(table)
    stays = pl.read_csv(src / "ed/edstays.csv.gz", infer_schema=False)
    shift = pl.duration(days=days)
    for col in ("intime", "outtime"):
        stays = stays.with_columns(
            (pl.col(col).str.to_datetime("%Y-%m-%d %H:%M:%S") + shift).dt.strftime(
                "%Y-%m-%d %H:%M:%S"
            )
        )
    with gzip.open(dst / "ed/edstays.csv.gz", "wb") as fh:
        stays.write_csv(fh)
    return dst


def test_empty_cohort_stops_extract_cohort_naming_the_window(
    tiny_download: dict[str, Path], tmp_path: Path
) -> None:
    # No ECG inside any ED window: every stay moved a century after its ECGs.
    sources = tiny_download | {
        "mimic_iv_ed": _shift_ed_stays(tiny_download["mimic_iv_ed"], tmp_path / "ed", days=36_500)
    }
    n_records = len(
        (tiny_download["mimic_iv_ecg"] / "record_list.csv").read_text().splitlines()[1:]
    )
    config = _config(tmp_path, sources)
    out = _failed(tmp_path, config, "results/extract/cohort.parquet")
    reason = f"0 of {n_records:,} ECGs fall within 90 minutes of an ED intime; check source paths"
    assert reason in out and "cohort.ed_window_minutes" in out
    _assert_reason_logged(tmp_path, "extract_cohort", reason)
    assert not (tmp_path / "results/extract/cohort.parquet").exists()
    # Nothing counts as finished: a rerun plans the failed stage again (and only it).
    rerun = snakemake(tmp_path, TEST_CONFIG, str(config), "-n", "results/extract/cohort.parquet")
    assert planned_rules(rerun) == {"extract_cohort": 1}


def test_unreachable_thresholds_stop_their_stage_naming_the_key(
    tiny_download: dict[str, Path], tmp_path: Path
) -> None:
    # labels.min_count (issue 10) and lab_targets.min_events no code / lab reaches.
    config = _config(
        tmp_path,
        tiny_download,
        labels={"min_count": 1_000_000},
        lab_targets={"min_events": 1_000_000_000},
    )
    out = _failed(
        tmp_path, config, "results/extract/labels.parquet", "results/extract/lab_targets.parquet"
    )
    labels = re.search(r"no diagnosis code reaches labels\.min_count=1000000 positive ECGs "
                       r"\(highest count: (\d+) over \d+ codes", out)  # fmt: skip
    assert labels is not None, out[-3000:]
    assert 0 < int(labels.group(1)) < 1_000_000
    assert re.search(r"no protocol lab has lab_targets\.min_events=1000000000 events "
                     r"\(highest: [1-9]\d*\)", out)  # fmt: skip
    # An expected stop: its one line on the console, the traceback only in the job log.
    assert "Traceback (most recent call last)" not in out, out[-3000:]
    _assert_reason_logged(tmp_path, "extract_labels", "labels.min_count=1000000")
    _assert_reason_logged(tmp_path, "extract_lab_targets", "lab_targets.min_events=1000000000")
    for name in ("labels.parquet", "label_manifest.tsv", "lab_targets.parquet"):
        assert not (tmp_path / "results/extract" / name).exists()
    # the cohort stage itself was fine and stays finished
    assert pl.read_parquet(tmp_path / "results/extract/cohort.parquet").height > 0
