"""MLflow tracking: parent/child runs per results directory, identifier screening, no-op mode."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline import tracking, tracking_run
from pipeline.tracking import parent_run, stage_run

EXP = "ecg-explain-test"


@pytest.fixture(scope="module")
def db_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One sqlite tracking database for the whole module (creating one takes seconds).

    The URI is relative, as in the default config, so the module runs in a scratch working
    directory: the database's missing parent directory must be created.
    """
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("mlflow"))
    try:
        yield "sqlite:///nested/dir/mlflow.db"
    finally:
        os.chdir(cwd)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, results: Path) -> list:
    client = _client(uri)
    exp = client.get_experiment_by_name(EXP)
    key = tracking.results_key(results)
    return client.search_runs([exp.experiment_id], f"tags.`{tracking.RESULTS_KEY_TAG}` = '{key}'")


def test_two_stages_share_one_parent(db_uri: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    params = {"pretrain": {"lr": 1e-3, "epochs": 2}, "model": {"hidden": [128, 128]}}
    with stage_run(db_uri, EXP, results, "pretrain", params) as run:
        assert run.enabled
        for epoch, loss in enumerate([3.0, 2.0, 1.5]):
            run.log_metrics({"loss": loss, "on_diag": loss / 2}, step=epoch)
        run.set_tag("note", "first")
    with stage_run(db_uri, EXP, results, "finetune_diagnoses", {"seed": 0}) as run2:
        run2.log_metrics({"val_macro_auroc": 0.7})
    assert Path("nested/dir/mlflow.db").is_file()  # relative to the cwd, parents created

    runs = _runs(db_uri, results)
    parents = [r for r in runs if r.data.tags.get(tracking.ROLE_TAG) == "parent"]
    children = [r for r in runs if r.data.tags.get(tracking.ROLE_TAG) == "stage"]
    assert len(parents) == 1
    assert sorted(r.info.run_name for r in children) == ["finetune_diagnoses", "pretrain"]
    assert {r.data.tags[tracking.PARENT_TAG] for r in children} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in children)

    client = _client(db_uri)
    history = client.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 3.0),
        (1, 2.0),
        (2, 1.5),
    ]
    first = client.get_run(run.run_id).data
    assert first.params["pretrain.lr"] == "0.001"
    assert first.params["model.hidden"] == "[128, 128]"
    assert first.tags["note"] == "first"

    # A different results directory gets its own parent.
    with stage_run(db_uri, EXP, tmp_path / "other", "pretrain", {}) as run3:
        assert run3.enabled
    other = client.get_run(run3.run_id).data.tags[tracking.PARENT_TAG]
    assert other != parents[0].info.run_id


def test_parent_run_and_artifacts(db_uri: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    with stage_run(db_uri, EXP, results, "pretrain", {}) as child:
        pass
    table = tmp_path / "table1.csv"
    table.write_text("approach,diagnoses_auroc\nsignal-only,0.7\n")
    with parent_run(db_uri, EXP, results) as run:
        run.log_metrics({"method_diagnoses.macro_auroc": 0.8})
        run.log_artifact(table, "tables")
    client = _client(db_uri)
    parent = client.get_run(child.run_id).data.tags[tracking.PARENT_TAG]
    assert run.run_id == parent
    assert client.get_run(parent).data.metrics["method_diagnoses.macro_auroc"] == 0.8
    assert [a.path for a in client.list_artifacts(parent, "tables")] == ["tables/table1.csv"]
    # Artifacts land beside the database, not in ./mlruns of whatever directory ran first.
    stored = list(Path("nested/dir/mlartifacts").rglob("table1.csv"))
    assert len(stored) == 1 and stored[0].read_text() == table.read_text()


def test_failed_stage_is_marked_failed(db_uri: str, tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        stage_run(db_uri, EXP, tmp_path, "train", {}) as run,
    ):
        raise RuntimeError("boom")
    assert _client(db_uri).get_run(run.run_id).info.status == "FAILED"


def test_concurrent_jobs_create_one_parent(db_uri: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    errors: list[BaseException] = []

    def job(i: int) -> None:
        try:
            with stage_run(db_uri, EXP, results, f"job{i}", {"i": i}) as run:
                run.log_metrics({"x": float(i)})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    runs = _runs(db_uri, results)
    assert sum(r.data.tags.get(tracking.ROLE_TAG) == "parent" for r in runs) == 1
    assert sum(r.data.tags.get(tracking.ROLE_TAG) == "stage" for r in runs) == 3


@pytest.mark.parametrize("uri", [None, "", "db"])
def test_identifiers_are_refused(uri: str | None, db_uri: str, tmp_path: Path) -> None:
    uri = db_uri if uri == "db" else uri
    with (
        pytest.raises(ValueError, match="study_id"),
        stage_run(uri, EXP, tmp_path, "x", {"data": {"study_id": 5}}),
    ):
        pass
    with stage_run(uri, EXP, tmp_path, "x", {}) as run:
        with pytest.raises(ValueError, match="subject_id"):
            run.log_params({"test_subject_ids": [1, 2]})
        with pytest.raises(ValueError, match="hadm_id"):
            run.log_metrics({"hadm_id": 1.0})
        ids_csv = tmp_path / "preds.csv"
        ids_csv.write_text("study_id,prob\n1,0.5\n")
        with pytest.raises(ValueError, match=r"preds\.csv"):
            run.log_artifact(ids_csv)
        npz = tmp_path / "preds.npz"
        np.savez(npz, stay_id=np.arange(3), prob=np.zeros(3))
        with pytest.raises(ValueError, match="stay_id"):
            run.log_artifact(npz)


def test_disabled_tracking_is_a_noop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"\x89PNG")
    for uri in (None, ""):
        with stage_run(uri, EXP, tmp_path / "results", "pretrain", {"lr": 0.1}) as run:
            assert not run.enabled
            run.log_params({"a": {"b": 1}})
            run.log_metrics({"loss": 1.0}, step=3)
            run.log_artifact(plot)
            run.set_tag("k", "v")
        with parent_run(uri, EXP, tmp_path / "results") as parent:
            assert not parent.enabled
            parent.log_metrics({"m": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]  # nothing created


def test_broken_tracking_does_not_kill_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tracking_run, "_RETRY_SLEEPS_S", (0.0,))
    bad = tmp_path / "broken.db"
    bad.write_bytes(b"this is not a sqlite database" * 100)
    finished = False
    with stage_run(f"sqlite:///{bad}", EXP, tmp_path / "results", "pretrain", {"lr": 1}) as run:
        run.log_metrics({"loss": 1.0})
        finished = True
    assert finished
    assert not run.enabled
    assert "tracking disabled" in caplog.text


def test_flatten_params() -> None:
    flat = tracking_run.flatten_params({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None, "f": "x"})
    assert flat == {"a.b.c": "1", "a.d": "[1, 2]", "e": "null", "f": "x"}


def test_counts_are_not_identifiers() -> None:
    tracking.check_no_identifiers(["n_study_ids", "data.n_subject_id", "lr"], "params")
    with pytest.raises(ValueError, match="dates"):
        tracking.check_no_identifiers(["cohort.ecg_time"], "params")


def test_default_tracking_follows_the_results_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shipped config's mlflow section with `results:` elsewhere, as a rule script builds it.
    import yaml

    from tests.snakemake_helpers import REPO

    shipped = yaml.safe_load((REPO / "config.yaml").read_text())["mlflow"]
    monkeypatch.chdir(tmp_path)
    cfg = tracking.TrackingConfig(**shipped, results_dir="results_c3")
    assert cfg.tracking_uri == "sqlite:///results_c3/mlflow.db"
    table = tmp_path / "table1.csv"
    table.write_text("approach,diagnoses_auroc\nsignal-only,0.7\n")
    with stage_run(cfg.tracking_uri, cfg.experiment, Path(cfg.results_dir), "pretrain", {}):
        pass
    with parent_run(cfg.tracking_uri, cfg.experiment, Path(cfg.results_dir)) as run:
        run.log_artifact(table, "tables")
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlruns").exists()
    assert (tmp_path / "results_c3/mlflow.db").is_file()
    assert len(list((tmp_path / "results_c3/mlartifacts").rglob("table1.csv"))) == 1
    # A named URI (e.g. a tracking server) is used as given; "" still turns tracking off.
    named = tracking.TrackingConfig("http://mlflow.example:5000", results_dir="results_c3")
    assert named.tracking_uri == "http://mlflow.example:5000"
    assert tracking.TrackingConfig("", results_dir="results_c3").tracking_uri == ""
    absolute = tracking.TrackingConfig(results_dir=str(tmp_path / "abs"))
    assert absolute.tracking_uri == f"sqlite:///{tmp_path}/abs/mlflow.db"
