"""The whole DAG on the tiny .test cohort, driven through the snakemake command line.

One run builds everything (session fixture); the tests then check what a user looks at
(Table 1, the report) and what a user relies on (a split edit re-runs exactly the
split-dependent rules; a finished workflow has nothing left to do).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.table1 import approaches
from pipeline.registry import model_names, spec
from tests.snakemake_helpers import REPO, edited_config, planned_rules, snakemake

TEST_CONFIG = REPO / ".test/config.yaml"

# Rules downstream of the splits: exactly what a split edit must re-run.
SPLIT_DEPENDENT = {
    "make_splits",
    "stage_ids",
    "label_subset",
    "select_lab_targets",
    "pretrain",
    "pretrain_ecg_only",
    "train_model",
    "evaluate",
    "report",
    "export_model",
    "probe_encoder",
    "probe",
    "all",
}


@pytest.fixture(scope="module")
def finished_run(tiny_run: Path) -> Path:
    return tiny_run  # one run per session (tests/conftest.py), shared with other modules


def test_table1_structure_and_bounds(finished_run: Path) -> None:
    table = json.loads((finished_run / "results/table1.json").read_text())
    rows = table["rows"]
    # the paper's four approaches, then the beyond-the-paper rows: one per registry row
    assert [r["approach"] for r in rows] == [a.title for a in approaches()]
    cells = [
        cell for row in rows for key in ("diagnoses", "labs") if (cell := row.get(key)) is not None
    ]
    assert len(cells) == len(model_names())  # every registered model fills one cell
    for cell in cells:
        assert 0.0 <= cell["ci_low"] <= cell["auroc"] <= cell["ci_high"] <= 1.0
        assert cell["n_labels_evaluated"] > 0
    comparisons = table["comparisons"]
    for pair in (
        "method_diagnoses_minus_signal_only",
        "method_diagnoses_minus_multimodal_classification",
        "method_labs_minus_multimodal_labs",
        "method_regularised_minus_method_diagnoses",
    ):
        diff = comparisons[pair]
        assert -1.0 <= diff["ci_low"] <= diff["ci_high"] <= 1.0
    assert "gap_bridged" in comparisons
    md = (finished_run / "results/table1.md").read_text()
    assert "Inference" in md and "ECG" in md
    assert (finished_run / "results/report.md").stat().st_size > 0


def test_every_record_is_sharded_or_quarantined(finished_run: Path) -> None:
    import polars as pl

    cohort = pl.read_parquet(finished_run / "results/extract/cohort.parquet")
    index = pl.read_parquet(finished_run / "results/shards/index.parquet")
    quarantine = pl.read_csv(finished_run / "results/shards/quarantine.tsv", separator="\t")
    assert set(cohort["study_id"]) == set(index["study_id"]) | set(quarantine["study_id"])


def test_nothing_left_to_do_after_a_run(finished_run: Path) -> None:
    proc = snakemake(finished_run, TEST_CONFIG, "-n")
    assert planned_rules(proc) == {}


def test_split_edit_reruns_only_split_dependent_rules(finished_run: Path, tmp_path: Path) -> None:
    cfg = edited_config(tmp_path / "edited.yaml", TEST_CONFIG, {"splits.seed": 1})
    planned = planned_rules(snakemake(finished_run, cfg, "-n"))
    assert set(planned) == SPLIT_DEPENDENT
    assert planned["train_model"] == planned["evaluate"] == len(model_names())


def test_stage_setting_edit_reruns_that_stage_and_downstream(
    finished_run: Path, tmp_path: Path
) -> None:
    cfg = edited_config(tmp_path / "edited.yaml", TEST_CONFIG, {"finetune_labs.lr": 0.002})
    planned = planned_rules(snakemake(finished_run, cfg, "-n"))
    assert set(planned) == {"train_model", "evaluate", "report", "export_model", "all"}
    assert planned["train_model"] == planned["evaluate"] == 1  # method_labs only


def test_label_fraction_edit_reruns_only_the_label_trained_models(
    finished_run: Path, tmp_path: Path
) -> None:
    cfg = edited_config(tmp_path / "edited.yaml", TEST_CONFIG, {"label_fraction": 0.5})
    planned = planned_rules(snakemake(finished_run, cfg, "-n"))
    # no re-split, no re-shard, no stage 1: the subset and what trains on diagnoses
    assert {"label_subset", "train_model", "evaluate"} <= set(planned)
    assert not set(planned) & {"make_splits", "stage_ids", "shard_ecg", "pretrain"}
    diagnoses = [m for m in model_names() if spec(m).task == "diagnoses"]
    assert len(diagnoses) <= planned["train_model"] < len(model_names())


@pytest.mark.parametrize(
    ("section", "key", "value", "stages", "models"),
    [
        # the ECG-only stage 1 and the one model built on it; each is probed by its own job
        (
            "pretrain_ecg_only",
            "augment",
            {"noise_std": 0.1},
            {"pretrain_ecg_only", "probe_encoder", "probe"},
            1,
        ),
        ("distilled", "mix", 0.25, {"probe_encoder", "probe"}, 1),  # the student, not its teacher
    ],
)
def test_beyond_the_paper_edits_rerun_only_their_model(
    finished_run: Path,
    tmp_path: Path,
    section: str,
    key: str,
    value: object,
    stages: set[str],
    models: int,
) -> None:
    cfg = edited_config(tmp_path / "edited.yaml", TEST_CONFIG, {f"{section}.{key}": value})
    planned = planned_rules(snakemake(finished_run, cfg, "-n"))
    assert set(planned) == {"train_model", "evaluate", "report", "export_model", "all"} | stages
    assert planned["train_model"] == planned["evaluate"] == models


def test_unused_objective_block_edit_reruns_nothing(finished_run: Path, tmp_path: Path) -> None:
    # Only the chosen objective's arguments are pre-training params: tuning VICReg's weights
    # in config.yaml must not re-train a Barlow Twins model, while lambda must.
    def planned(block: str, key: str, value: float) -> dict[str, int]:
        edit = {f"pretrain.{block}.{key}": value}
        cfg = edited_config(tmp_path / f"{block}.yaml", TEST_CONFIG, edit)
        return planned_rules(snakemake(finished_run, cfg, "-n"))

    assert planned("vicreg", "var_weight", 30.0) == {}
    lambd_edit = planned("barlow_twins", "lambd", 0.01)
    assert {"pretrain", "train_model", "probe"} <= set(lambd_edit)


# Skipped only on a developer machine without SLURM; CI (CI=true) installs and starts one,
# so there a missing sbatch fails this test instead of hiding it.
@pytest.mark.skipif(
    shutil.which("sbatch") is None and not os.environ.get("CI"), reason="no SLURM here"
)
def test_slurm_profile_submits_jobs(tmp_path: Path) -> None:
    # The same DAG through the SLURM executor: the cohort and one converted table.
    proc = snakemake(
        tmp_path,
        TEST_CONFIG,
        "--profile",
        str(REPO / "profiles/slurm"),
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "3",
        "results/parquet/patients.parquet",
    )
    assert (tmp_path / "results/parquet/patients.parquet").stat().st_size > 0
    assert "submitted with SLURM jobid" in proc.stdout + proc.stderr


def test_slurm_profile_multi_gpu_example_dry_runs(tmp_path: Path) -> None:
    # The profile's commented multi-GPU example, uncommented, plans stage 1 on 4 GPUs of one
    # node through the executor plugin's own resources (a dry run needs no SLURM).
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    start = text.index("  # >>> multi-GPU example")
    end = text.index("  # <<< multi-GPU example")
    block = [line.replace("  # ", "  ", 1) for line in text[start:end].splitlines()[1:]]
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(text[:start] + "\n".join(block) + "\n" + text[end:])
    proc = snakemake(tmp_path, TEST_CONFIG, "--profile", str(profile), "-n")
    job = proc.stdout.split("rule pretrain:")[1].split("\n\n")[0]
    resources = job.split("resources: ")[1].splitlines()[0].split(", ")
    assert {"gpu=4", "cpus_per_gpu=8", "nodes=1", "slurm_partition=gpu"} <= set(resources)


def _record_paths(run: Path, study_ids: np.ndarray) -> list[Path]:
    import polars as pl

    cohort = pl.read_parquet(run / "results/extract/cohort.parquet").select("study_id", "path")
    by_id = dict(cohort.iter_rows())
    return [run / "results/synthetic/mimic-iv-ecg" / by_id[int(i)] for i in study_ids]


def test_explain_cli_reproduces_pipeline_predictions_from_raw_wfdb(
    finished_run: Path, tmp_path: Path
) -> None:
    # ECG-only inference from the raw record must give what the pipeline predicted.
    results = finished_run / "results"
    labs = np.load(results / "predictions/method_labs.npz")
    dx = np.load(results / "predictions/method_diagnoses.npz")
    records = _record_paths(finished_run, labs["study_id"][:3])
    broken = tmp_path / records[0].name  # a copy of the first record with a truncated .dat
    (tmp_path / f"{broken.name}.hea").write_text(records[0].with_suffix(".hea").read_text())
    (tmp_path / f"{broken.name}.dat").write_bytes(
        records[0].with_suffix(".dat").read_bytes()[:5000]
    )
    out = tmp_path / "explanations.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.explain",
            "--model",
            str(results / "models/method_labs"),
            "--labels",
            str(results / "extract/label_manifest.tsv"),
            "--json",
            str(out),
            *map(str, [*records, broken]),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 1, proc.stderr  # one record was unreadable
    assert "predicted lab abnormalities" in proc.stdout
    explained = json.loads(out.read_text())
    assert explained[-1]["error"].startswith("truncated_signal")
    for k, item in enumerate(explained[:-1]):
        lab = {f["label"]: f["probability"] for f in item["lab_abnormalities"]}
        diag = {f["label"]: f["probability"] for f in item["diagnoses"]}
        np.testing.assert_allclose([lab[t] for t in labs["labels"]], labs["prob"][k], atol=1e-5)
        np.testing.assert_allclose([diag[c] for c in dx["labels"]], dx["prob"][k], atol=1e-5)
        probs = [f["probability"] for f in item["diagnoses"]]
        assert probs == sorted(probs, reverse=True)
        assert any(f["name"] for f in item["diagnoses"])  # names from the label manifest


def test_explain_refuses_a_model_without_both_heads(finished_run: Path) -> None:
    from pipeline.infer.explain import explain_records

    with pytest.raises(ValueError, match="method_labs"):
        explain_records(finished_run / "results/models/signal_only", [])
