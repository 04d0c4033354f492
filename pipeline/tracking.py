"""MLflow tracking as a sink: one parent run per results directory, one child run per stage.

No rule ever reads MLflow; it only mirrors what the files under ``results/`` already hold.
Hence two guarantees:

* a tracking failure (database locked, server down, ...) logs a warning and turns the run
  into a no-op: it never kills a finished training;
* nothing that names a patient goes in: parameter and metric keys naming identifiers
  (``subject_id``, ``study_id``, dates, ...) are refused with ``ValueError`` before anything
  is logged, and artifacts are screened for identifier columns.

Tracking is disabled when the URI is ``None`` or empty; the returned object then has the same
methods and still screens for identifiers, so a leak is caught with tracking off too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.privacy import check_no_identifiers
from pipeline.stops import Interrupted
from pipeline.tracking_run import StageRun, flatten_params, retrying

log = logging.getLogger(__name__)

T = TypeVar("T")

RESULTS_KEY_TAG = "ecg_explain.results_key"
ROLE_TAG = "ecg_explain.role"
STAGE_TAG = "ecg_explain.stage"
PARENT_TAG = "mlflow.parentRunId"
RESUMES_TAG = "ecg_explain.resumes"  # on a rerun: the interrupted run(s) it replaces
SUPERSEDED_TAG = "ecg_explain.superseded_by"  # on an interrupted run: the run that replaced it
OWNER_TAG = "ecg_explain.owner"  # host:pid of the process that opened the run
STOP_TAG = "ecg_explain.stop_reason"  # on a run closed as KILLED by a signal: what and where
LOCK_NAME = ".mlflow.lock"


@dataclass(frozen=True)
class TrackingConfig:
    """The ``mlflow`` config section plus the results directory (the parent run's key).

    Built as ``TrackingConfig(**config["mlflow"], results_dir=config["results"])``.

    Attributes:
        tracking_uri: MLflow tracking URI; ``""`` disables tracking. ``None`` (the default)
            becomes ``sqlite:///<results_dir>/mlflow.db``, so runs and artifacts
            (``<results_dir>/mlartifacts``, beside the database) follow ``results:``; a
            named URI (a tracking server, another database) is used as given.
        experiment: Experiment name.
        results_dir: The pipeline's results directory (config key ``results``).
    """

    tracking_uri: str | None = None
    experiment: str = "ecg-explain"
    results_dir: str = "results"

    def __post_init__(self) -> None:
        if self.tracking_uri is None:
            object.__setattr__(self, "tracking_uri", default_tracking_uri(self.results_dir))


def default_tracking_uri(results_dir: str | Path) -> str:
    """The sqlite database inside the results directory (relative to the working directory
    when ``results_dir`` is; an absolute one gives ``sqlite:////abs/...``)."""
    return f"sqlite:///{Path(results_dir).as_posix()}/mlflow.db"


def results_key(results_dir: Path) -> str:
    """Tag value identifying a results directory: a hash of its resolved path."""
    return hashlib.sha256(str(Path(results_dir).resolve()).encode()).hexdigest()[:16]


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return Path(tracking_uri[len(prefix) :].split("?", 1)[0])


@contextlib.contextmanager
def _file_lock(results_dir: Path) -> Iterator[None]:
    """Serialise find-or-create across the Snakemake jobs that start at the same time."""
    results_dir.mkdir(parents=True, exist_ok=True)
    with (results_dir / LOCK_NAME).open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError as exc:  # some network file systems refuse flock
            log.warning("cannot lock %s (%s); MLflow parent lookup unguarded", fh.name, exc)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _experiment_id(client: Any, experiment: str, tracking_uri: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        db = _sqlite_file(tracking_uri)
        # Beside the database rather than MLflow's default ./mlruns in whatever directory
        # the first job happened to run in.
        location = (db.resolve().parent / "mlartifacts").as_uri() if db is not None else None
        return str(client.create_experiment(experiment, artifact_location=location))
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return str(exp.experiment_id)


def _parent_id(client: Any, experiment_id: str, results_dir: Path) -> str:
    key = results_key(results_dir)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RESULTS_KEY_TAG}` = '{key}' and tags.`{ROLE_TAG}` = 'parent'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    if found:
        return str(found[0].info.run_id)
    run = client.create_run(
        experiment_id,
        run_name=f"{results_dir.resolve().name}-{key[:8]}",
        tags={
            RESULTS_KEY_TAG: key,
            ROLE_TAG: "parent",
            "ecg_explain.results_dir": str(results_dir.resolve()),
        },
    )
    # The parent is a container: marked finished at once, children and the report log to it.
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)


def _connect(tracking_uri: str, experiment: str, results_dir: Path) -> tuple[Any, str, str] | None:
    """Client, experiment id and parent run id; None (with a warning) when MLflow fails."""

    def connect() -> tuple[Any, str, str]:
        from mlflow import MlflowClient

        db = _sqlite_file(tracking_uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)

        # The lock also covers the first touch of a new sqlite database, whose schema
        # migration is not safe to run from two processes at once.
        with _file_lock(results_dir):
            client = MlflowClient(tracking_uri=tracking_uri)
            exp_id = _experiment_id(client, experiment, tracking_uri)
            return client, exp_id, _parent_id(client, exp_id, results_dir)

    return retrying("connect", connect)[1]


@contextlib.contextmanager
def stage_run(
    tracking_uri: str | None,
    experiment: str,
    results_dir: Path,
    stage: str,
    params: Mapping[str, Any],
) -> Iterator[StageRun]:
    """Open a child run for ``stage`` under the parent run of ``results_dir``.

    Args:
        tracking_uri: MLflow URI (e.g. ``sqlite:///results/mlflow.db``, relative to the
            working directory); ``None`` or ``""`` disables tracking.
        experiment: Experiment name, created when missing.
        results_dir: The pipeline's results directory; its resolved path picks the parent run.
        stage: Child run name (the rule name).
        params: Parameters (nested mappings allowed) logged on the child run.

    Yields:
        A :class:`StageRun`; the run ends FINISHED, or FAILED / KILLED when the body raises
        (KILLED on :class:`~pipeline.stops.Interrupted`, with its reason in tag
        ``ecg_explain.stop_reason``, and on KeyboardInterrupt).
        Runs of the same stage left RUNNING by a killed job are closed as KILLED first;
        the new run names them in tag ``ecg_explain.resumes`` and each names the new run
        in ``ecg_explain.superseded_by`` (a rerun links to, never reuses, the old run).

    Raises:
        ValueError: If a parameter key names a patient identifier (checked before anything
            else, with tracking on or off).
    """
    check_no_identifiers(flatten_params(params), "MLflow params")
    run = StageRun()
    if tracking_uri:
        conn = _connect(tracking_uri, experiment, Path(results_dir))
        if conn is not None:
            client, exp_id, parent = conn
            key = results_key(Path(results_dir))
            _, interrupted = retrying(
                "search_runs", lambda: _interrupted_runs(client, exp_id, key, stage)
            )
            _, created = retrying(
                "create_run",
                lambda: client.create_run(
                    exp_id,
                    run_name=stage,
                    tags={
                        PARENT_TAG: parent,
                        STAGE_TAG: stage,
                        ROLE_TAG: "stage",
                        RESULTS_KEY_TAG: key,
                        OWNER_TAG: _owner(),
                    },
                ),
            )
            if created is not None:
                run = StageRun(client, created.info.run_id)
                _supersede(client, run, interrupted or [])
                run.log_params(params)
    with _terminating(run):
        yield run


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive_here(owner: str) -> bool:
    """Whether ``owner`` (host:pid) is a live process on this host (then it is no orphan)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _interrupted_runs(client: Any, experiment_id: str, key: str, stage: str) -> list[Any]:
    """Runs of this stage and results directory that an interrupted job left behind.

    A ``kill -9`` (or a lost cluster node) never reaches :func:`_terminating` and leaves
    the run RUNNING. Snakemake's lock lets only one job per stage and results directory
    run at a time, so a RUNNING run of the same stage is an orphan, unless its owner still
    lives on this host. A run stopped by SIGTERM/SIGINT was closed as KILLED at once
    (tag ``ecg_explain.stop_reason``); it is linked too until a rerun supersedes it.
    """
    where = f"tags.`{RESULTS_KEY_TAG}` = '{key}' and tags.`{STAGE_TAG}` = '{stage}'"
    found = [
        run
        for status in ("RUNNING", "KILLED")
        for run in client.search_runs(
            [experiment_id], filter_string=f"{where} and attributes.status = '{status}'"
        )
    ]
    return [
        r
        for r in found
        if (r.info.status == "RUNNING" and not _alive_here(r.data.tags.get(OWNER_TAG, "")))
        or (STOP_TAG in r.data.tags and SUPERSEDED_TAG not in r.data.tags)
    ]


def _supersede(client: Any, run: StageRun, interrupted: list[Any]) -> None:
    """Close the orphaned runs as KILLED and link every interrupted run and ``run`` both ways."""
    orphans = [r for r in interrupted if r.info.status == "RUNNING"]
    for old in orphans:
        StageRun(client, old.info.run_id)._terminate("KILLED")
    for old in interrupted:
        StageRun(client, old.info.run_id).set_tag(SUPERSEDED_TAG, run.run_id)
    if interrupted:
        run.set_tag(RESUMES_TAG, ",".join(r.info.run_id for r in interrupted))
    if orphans:
        log.info("MLflow: closed %d interrupted run(s) of this stage as KILLED", len(orphans))


@contextlib.contextmanager
def parent_run(tracking_uri: str | None, experiment: str, results_dir: Path) -> Iterator[StageRun]:
    """The parent run of ``results_dir`` itself, for the report stage's summary metrics.

    Same arguments and failure behaviour as :func:`stage_run`; the parent is never
    terminated here (it is a container that stays FINISHED).
    """
    run = StageRun()
    if tracking_uri:
        conn = _connect(tracking_uri, experiment, Path(results_dir))
        if conn is not None:
            client, _, parent = conn
            run = StageRun(client, parent)
    yield run


@contextlib.contextmanager
def _terminating(run: StageRun) -> Iterator[None]:
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except Interrupted as stop:  # SIGTERM/SIGINT: checkpoint written, the job is retried
        status = "KILLED"
        run.set_tag(STOP_TAG, stop.reason)
        raise
    finally:
        run._terminate(status)
