"""A job's uncaught error: an expected stop is one line on the console, a crash its traceback;
the job log holds the traceback either way (each case a fresh interpreter, as a rule script)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.snakemake_helpers import REPO

JOB = """
import sys
from pipeline.data.checks import require
from pipeline.logs import setup_logging
setup_logging(sys.argv[1])
if sys.argv[2] == "expected":
    require(0, 1, "0 of 12 ECGs fall within 90 minutes; check cohort.ed_window_minutes")
raise ValueError("not an expected stop")
"""


@pytest.mark.parametrize("kind", ["expected", "crash"])
def test_console_shows_one_line_for_an_expected_stop(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "job.log"
    proc = subprocess.run(
        [sys.executable, "-c", JOB, str(log), kind], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 1
    text = log.read_text()
    assert "Traceback (most recent call last)" in text  # the job log keeps it
    if kind == "expected":
        (line,) = proc.stderr.strip().splitlines()
        assert "CRITICAL pipeline: stage stopped: TooLittleData: 0 of 12 ECGs" in line
        assert line in text
    else:
        assert "Traceback (most recent call last)" in proc.stderr
        assert "stage failed: ValueError: not an expected stop" in proc.stderr
