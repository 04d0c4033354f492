"""Report stage on synthetic prediction files: Table 1, comparisons, figures, MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.evaluation.evaluate import EvalConfig, evaluate_predictions
from pipeline.evaluation.predictions import label_names_for
from pipeline.evaluation.report import ReportOutputs, build_report
from pipeline.registry import model_names
from pipeline.tracking import TrackingConfig

MODELS = model_names()

N = 240
DIAG = [f"I{i:02d}" for i in range(9)] + ["Z99"]  # Z99 never positive: skipped
LABS = ["Potassium_high", "Creatinine_high", "Sodium_low", "Hemoglobin_low", "Calcium_Total_low"]
STRENGTH = {  # how informative each model's scores are
    "signal_only": 0.4,
    "multimodal_classification": 0.9,
    "method_diagnoses": 0.6,
    "multimodal_labs": 0.7,
    "method_labs": 0.5,
    "method_regularised": 0.65,
    "distilled": 0.55,
    "ssl_ecg_only": 0.45,
    "random_init_finetune": 0.42,
}
CFG = EvalConfig(n_bootstrap=200, seed=3, n_roc_labels=4)


def _targets(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    latent = rng.normal(size=(N, 1))
    diag = (rng.random((N, len(DIAG))) < 1 / (1 + np.exp(2.0 - latent))).astype(np.float32)
    diag[:, -1] = 0
    labs = (rng.random((N, len(LABS))) < 1 / (1 + np.exp(1.5 - latent))).astype(np.float32)
    labs[rng.random(labs.shape) < 0.3] = np.nan  # not measured
    return diag, labs


def write_world(root: Path) -> dict[str, Path]:
    """Five prediction files (rows shuffled differently), two manifests."""
    rng = np.random.default_rng(0)
    study_id = rng.choice(10**8, size=N, replace=False).astype(np.int64)
    diag, labs = _targets(rng)
    paths = {}
    for model, strength in STRENGTH.items():
        target = labs if model.endswith("labs") else diag
        logit = 3 * strength * np.nan_to_num(target, nan=0.5) + rng.normal(size=target.shape)
        prob = 1 / (1 + np.exp(-logit))
        perm = rng.permutation(N)
        paths[model] = root / "predictions" / f"{model}.npz"
        paths[model].parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            paths[model],
            study_id=study_id[perm],
            prob=prob[perm].astype(np.float32),
            target=target[perm],
            labels=np.array(LABS if model.endswith("labs") else DIAG),
            task=np.array("labs" if model.endswith("labs") else "diagnoses"),
        )
    write_manifests(root)
    return paths


def write_manifests(root: Path) -> None:
    """The label manifest (DIAG, most frequent first) and the lab-target manifest (LABS)."""
    (root / "label_manifest.tsv").write_text(
        "code\tdescription\tcount\n"
        + "".join(f"{c}\tDiagnosis {c}\t{100 - i}\n" for i, c in enumerate(DIAG))
    )
    (root / "lab_target_manifest.tsv").write_text(
        "target\tlab\tfluid\tdirection\tthreshold\tn_events\tn_pos\tn_neg\n"
        + "".join(
            f"{t}\t{t.rsplit('_', 1)[0]}\tBlood\t{t.rsplit('_', 1)[1]}\t1.0\t500\t50\t450\n"
            for t in LABS
        )
    )


def evaluate_all(root: Path, preds: dict[str, Path], tracking: TrackingConfig | None) -> dict:
    evals = {}
    for model, path in preds.items():
        names = label_names_for(
            "labs" if model.endswith("labs") else "diagnoses",
            root / "label_manifest.tsv",
            root / "lab_target_manifest.tsv",
        )
        evals[model] = root / "evaluation" / f"{model}.json"
        evaluate_predictions(
            path,
            evals[model],
            root / "evaluation" / f"{model}_per_label.csv",
            CFG,
            names,
            tracking=tracking,
        )
    return evals


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, TrackingConfig]:
    root = tmp_path_factory.mktemp("report")
    tracking = TrackingConfig(f"sqlite:///{root}/mlflow.db", "report-test", str(root))
    preds = write_world(root)
    evals = evaluate_all(root, preds, tracking)
    outputs = ReportOutputs(
        root / "table1.md",
        root / "table1.csv",
        root / "table1.json",
        root / "report.md",
        root / "plots",
    )
    result = build_report(
        evals,
        preds,
        root / "label_manifest.tsv",
        root / "lab_target_manifest.tsv",
        outputs,
        CFG,
        tracking=tracking,
    )
    return root, result, tracking


def test_table1_structure_and_ranges(report: tuple) -> None:
    root, _, _ = report
    rows = json.loads((root / "table1.json").read_text())["rows"]
    assert [r["approach"] for r in rows] == [
        "Supervised signal-only (S4)",
        "Multimodal lab prediction (ECG + routine)",
        "Multimodal classification (ECG + routine + labs)",
        "Three-stage method (ECG only at inference)",
        "Beyond the paper: three-stage method, stage 2 with L2-SP to the stage-1 encoder",
        "Beyond the paper: ECG-only student distilled from the multimodal classifier",
        "Beyond the paper: stage 1 on two augmented ECG crops (no clinical data), then stage 2",
        "Control: the method's stage 2 on a randomly initialised encoder (no stage 1)",
    ]
    filled = {(r["approach"][:5], t) for r in rows for t in ("diagnoses", "labs") if r[t]}
    assert filled == {
        ("Super", "diagnoses"),
        ("Multi", "labs"),
        ("Multi", "diagnoses"),
        ("Three", "diagnoses"),
        ("Three", "labs"),
        ("Beyon", "diagnoses"),
        ("Contr", "diagnoses"),
    }
    for r in rows:
        assert r["inference_requires"] and r["training_requires"]
        for task in ("diagnoses", "labs"):
            cell = r[task]
            if cell is None:
                continue
            for key in ("auroc", "ci_low", "ci_high"):
                assert 0.0 <= cell[key] <= 1.0
            assert cell["ci_low"] <= cell["auroc"] <= cell["ci_high"]
            assert cell["n_labels_skipped"] == (1 if task == "diagnoses" else 0)
    # The informative multimodal model beats the signal-only one on these synthetic scores.
    by_model = {r[t]["model"]: r[t]["auroc"] for r in rows for t in ("diagnoses", "labs") if r[t]}
    assert by_model["multimodal_classification"] > by_model["signal_only"]
    csv = pl.read_csv(root / "table1.csv")
    assert csv.height == 8  # the paper's four rows, then the three beyond it and the control
    assert {"diagnoses_auroc", "labs_ci_high", "paper_diagnoses_auroc"} <= set(csv.columns)
    assert csv["paper_diagnoses_auroc"].to_list() == [0.768, None, 0.826, 0.795, *[None] * 4]
    assert csv["paper_labs_auroc"].to_list() == [None, 0.762, None, 0.701, *[None] * 4]
    assert csv["approach"][-2].startswith("Beyond the paper")
    assert csv["approach"][-1].startswith("Control")
    md = (root / "table1.md").read_text()
    assert "0.768 (0.764-0.772)" in md and "0.826 (0.822-0.829)" in md and "0.701" in md


def test_comparisons_in_report(report: tuple) -> None:
    root, result, _ = report
    comp = result["comparisons"]
    # one per registry `compare` entry, plus the paper's gap
    assert set(comp) == {
        "method_diagnoses_minus_signal_only",
        "method_diagnoses_minus_multimodal_classification",
        "method_diagnoses_minus_ssl_ecg_only",
        "method_labs_minus_multimodal_labs",
        "method_regularised_minus_method_diagnoses",
        "method_regularised_minus_signal_only",
        "distilled_minus_signal_only",
        "distilled_minus_method_diagnoses",
        "ssl_ecg_only_minus_signal_only",
        "random_init_finetune_minus_signal_only",
        "random_init_finetune_minus_method_diagnoses",
        "gap_bridged",
    }
    d = comp["method_diagnoses_minus_signal_only"]
    assert d["ci_low"] <= d["point"] <= d["ci_high"]
    assert d["point"] > 0  # 0.6 vs 0.4 informative
    text = (root / "report.md").read_text()
    assert "method_diagnoses - signal_only" in text
    assert "gap the method bridges" in text
    for png in ("per_label_auroc.png", "roc_curves.png", "explanations_lift.png"):
        assert f"plots/{png}" in text


def test_plots_are_nonempty_pngs(report: tuple) -> None:
    root, _, _ = report
    for png in ("per_label_auroc.png", "roc_curves.png", "explanations_lift.png"):
        data = (root / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    lift = pl.read_csv(root / "plots" / "explanations_lift.csv")
    assert lift.height == 9 * len(LABS)  # evaluable diagnoses x lab targets
    # Latent severity drives both heads, so flagged ECGs carry more predicted abnormality.
    assert lift["predicted_lift"].median() > 1.0


def test_everything_logged_to_mlflow(report: tuple) -> None:
    from mlflow import MlflowClient

    _, _, tracking = report
    client = MlflowClient(tracking.tracking_uri)
    exp = client.get_experiment_by_name(tracking.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ecg_explain.role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    assert 0 < parent.data.metrics["method_diagnoses.macro_auroc.point"] < 1
    assert "gap_bridged.point" in parent.data.metrics
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"table1.md", "table1.csv", "table1.json", "report.md", "plots"} <= files
    children = {r.info.run_name for r in runs if r.data.tags.get("ecg_explain.role") == "stage"}
    assert children == {f"evaluate_{m}" for m in MODELS}


def test_mismatched_records_are_refused(tmp_path: Path) -> None:
    preds = write_world(tmp_path)
    evals = evaluate_all(tmp_path, preds, None)
    with np.load(preds["signal_only"]) as z:
        arrays = dict(z)
    arrays["study_id"] = arrays["study_id"] + 1  # a different test set
    np.savez(preds["signal_only"], **arrays)
    evaluate_predictions(preds["signal_only"], evals["signal_only"], tmp_path / "x.csv", CFG)
    outputs = ReportOutputs(*(tmp_path / n for n in ("t.md", "t.csv", "t.json", "r.md", "p")))
    with pytest.raises(ValueError, match="same test records"):
        build_report(
            evals,
            preds,
            tmp_path / "label_manifest.tsv",
            tmp_path / "lab_target_manifest.tsv",
            outputs,
            CFG,
        )
    assert not (tmp_path / "t.md").exists() and not (tmp_path / "p").exists()
