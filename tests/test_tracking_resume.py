"""A stage killed with SIGKILL leaves its MLflow run RUNNING; the rerun closes and links it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from pipeline import tracking
from pipeline.tracking import stage_run

EXP = "ecg-explain-resume"

# A stage that opens its run, logs an epoch and is then killed as `kill -9` would.
KILLED_STAGE = """
import os, signal, sys
from pathlib import Path
from pipeline.tracking import stage_run
with stage_run(sys.argv[1], "{exp}", Path(sys.argv[2]), "pretrain", {{"lr": 0.1}}) as run:
    run.log_metrics({{"loss": 1.0}}, step=1)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _stage_runs(uri: str, results: Path) -> dict[str, object]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXP)
    key = tracking.results_key(results)
    runs = client.search_runs(
        [exp.experiment_id],
        f"tags.`{tracking.RESULTS_KEY_TAG}` = '{key}' and tags.`{tracking.ROLE_TAG}` = 'stage'",
    )
    return {r.info.run_id: r for r in runs}


def _kill_a_stage(uri: str, results: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_STAGE.format(exp=EXP), uri, str(results)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_rerun_closes_the_killed_run_and_links_both_ways(tmp_path: Path) -> None:
    uri, results = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "results"
    _kill_a_stage(uri, results)
    (killed,) = _stage_runs(uri, results).values()
    assert killed.info.status == "RUNNING"  # what kill -9 leaves behind

    with stage_run(uri, EXP, results, "finetune_labs", {}):  # another stage: untouched
        pass
    assert _stage_runs(uri, results)[killed.info.run_id].info.status == "RUNNING"

    with stage_run(uri, EXP, results, "pretrain", {"lr": 0.1}) as rerun:
        rerun.log_metrics({"loss": 0.5}, step=2)
    runs = _stage_runs(uri, results)
    old, new = runs[killed.info.run_id], runs[rerun.run_id]
    assert old.info.status == "KILLED" and old.info.end_time is not None
    assert old.data.tags[tracking.SUPERSEDED_TAG] == new.info.run_id
    assert new.data.tags[tracking.RESUMES_TAG] == old.info.run_id
    assert new.info.status == "FINISHED"
    assert old.data.metrics["loss"] == 1.0  # the interrupted epochs stay where they were logged
    assert [r.info.status for r in runs.values()].count("RUNNING") == 0

    # A second rerun finds nothing left to close.
    with stage_run(uri, EXP, results, "pretrain", {"lr": 0.1}) as again:
        pass
    assert tracking.RESUMES_TAG not in _stage_runs(uri, results)[again.run_id].data.tags


def test_a_live_run_of_the_same_stage_is_left_alone(tmp_path: Path) -> None:
    # Same host, owner alive (e.g. `--nolock` with two snakemake processes): not an orphan.
    uri, results = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "results"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with stage_run(uri, EXP, results, "pretrain", {}) as first:
            from mlflow import MlflowClient

            MlflowClient(tracking_uri=uri).set_tag(
                first.run_id, tracking.OWNER_TAG, f"{tracking.socket.gethostname()}:{sleeper.pid}"
            )
            with stage_run(uri, EXP, results, "pretrain", {}) as second:
                pass
        runs = _stage_runs(uri, results)
        assert runs[first.run_id].info.status == "FINISHED"  # closed by its own owner
        assert tracking.RESUMES_TAG not in runs[second.run_id].data.tags
    finally:
        sleeper.kill()
        sleeper.wait()
