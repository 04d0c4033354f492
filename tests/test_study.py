"""The study target: training and evaluation per seed, one Table 1 over the seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.evaluate import EvalConfig, evaluate_predictions
from pipeline.evaluation.study import StudyOutputs, needed_records, study_table
from pipeline.registry import model_names
from tests.snakemake_helpers import REPO, planned_rules, snakemake

MODELS = model_names()

TEST_CONFIG = REPO / ".test/config.yaml"
# Seeds 1 and 2 only: seed 0, the seed of every stage of the default run, is its models.
# The pipeline's own rules serve the seeds' runs (results/study/seed<s>/).
STUDY_RULES = {
    "pretrain": 2,
    "pretrain_ecg_only": 2,
    "train_model": 2 * len(MODELS),  # every model x two seeds
    "evaluate": 2 * len(MODELS),
    "study_table1": 1,
    "study": 1,
}
N, SEEDS = 160, (0, 1, 2)
STRENGTH = {
    "signal_only": 0.3,
    "multimodal_classification": 0.9,
    "method_diagnoses": 0.6,
    "multimodal_labs": 0.7,
    "method_labs": 0.5,
    "method_regularised": 0.65,
    "distilled": 0.5,
    "ssl_ecg_only": 0.35,
    "random_init_finetune": 0.32,
}
CFG = EvalConfig(n_bootstrap=200, seed=3)


def test_study_reuses_extraction_shards_and_splits(tiny_run: Path) -> None:
    # After the default run, the study plans only its own per-seed training and evaluation,
    # and none for the default run's seed.
    planned = planned_rules(snakemake(tiny_run, TEST_CONFIG, "-n", "study"))
    assert planned == STUDY_RULES


def _world(root: Path) -> tuple[dict[int, dict[str, Path]], dict[int, dict[str, Path]]]:
    """Five models per seed: same records and targets, seed-dependent scores."""
    rng = np.random.default_rng(0)
    study_id = rng.choice(10**8, size=N, replace=False).astype(np.int64)
    latent = rng.normal(size=(N, 1))
    diag = (rng.random((N, 6)) < 1 / (1 + np.exp(1.5 - latent))).astype(np.float32)
    labs = (rng.random((N, 4)) < 1 / (1 + np.exp(1.0 - latent))).astype(np.float32)
    labs[rng.random(labs.shape) < 0.3] = np.nan
    evals: dict[int, dict[str, Path]] = {}
    preds: dict[int, dict[str, Path]] = {}
    for seed in SEEDS:
        noise = np.random.default_rng(100 + seed)
        evals[seed], preds[seed] = {}, {}
        for model in MODELS:
            target = labs if model.endswith("labs") else diag
            logit = 3 * STRENGTH[model] * np.nan_to_num(target, nan=0.5)
            prob = 1 / (1 + np.exp(-(logit + noise.normal(size=target.shape))))
            path = root / f"seed{seed}" / f"{model}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                path,
                study_id=study_id,
                prob=prob.astype(np.float32),
                target=target,
                labels=np.array([f"L{k}" for k in range(target.shape[1])]),
                task=np.array("labs" if model.endswith("labs") else "diagnoses"),
            )
            preds[seed][model] = path
            evals[seed][model] = path.with_suffix(".json")
            evaluate_predictions(path, evals[seed][model], path.with_suffix(".csv"), CFG)
    return evals, preds


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("study")
    evals, preds = _world(root)
    out = StudyOutputs(root / "table1.md", root / "table1.csv", root / "table1.json")
    return root, study_table(evals, preds, out, CFG)


def test_study_table_pools_seeds(study: tuple[Path, dict]) -> None:
    root, summary = study
    models = summary["models"]
    for m in MODELS:
        points = [models[m]["per_seed"][str(s)]["point"] for s in SEEDS]
        assert models[m]["mean"] == pytest.approx(np.mean(points))
        assert models[m]["sd"] == pytest.approx(np.std(points, ddof=1))
        assert models[m]["sd"] > 0  # the seeds differ
    diff = summary["comparisons"]["method_diagnoses_minus_signal_only"]
    per_seed = [diff["per_seed"][str(s)]["point"] for s in SEEDS]
    pooled = diff["pooled"]
    assert pooled["point"] == pytest.approx(np.mean(per_seed))
    assert pooled["ci_low"] < pooled["point"] < pooled["ci_high"]
    assert pooled["point"] > 0  # the method's scores are built stronger than signal-only's
    # Averaging the training noise out narrows the interval below a single seed's.
    widths = [
        diff["per_seed"][str(s)]["ci_high"] - diff["per_seed"][str(s)]["ci_low"] for s in SEEDS
    ]
    assert pooled["ci_high"] - pooled["ci_low"] < max(widths)
    gap = summary["comparisons"]["gap_bridged"]["pooled"]
    assert 0 < gap["point"] < 1  # method between signal-only and multimodal by construction
    md = (root / "table1.md").read_text()
    assert "mean +- sd" in md and "Test-fold size" in md and "seed 2" in md
    assert json.loads((root / "table1.json").read_text())["seeds"] == list(SEEDS)
    assert (root / "table1.csv").read_text().count("\n") > 3 * len(MODELS)


def test_needed_records_scales_with_the_variance() -> None:
    one = needed_records(138, 0.02)
    two = needed_records(138, 0.04)
    assert two["power_80"] == pytest.approx(4 * one["power_80"], rel=0.01)
    # z_0.975 + z_0.8 = 2.80: 138 * (2.80 * 0.02 / 0.027)^2 = 594 records.
    assert one["power_80"] == pytest.approx(594, abs=2)
    assert one["ci_excludes_0"] < one["power_80"]


def test_study_refuses_unpaired_seeds(tmp_path: Path) -> None:
    evals, preds = _world(tmp_path)
    with np.load(preds[1]["signal_only"]) as npz:
        arrays = dict(npz)
    arrays["study_id"] = arrays["study_id"] + 1  # another test fold
    np.savez(preds[1]["signal_only"], **arrays)
    out = StudyOutputs(tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.json")
    with pytest.raises(ValueError, match="same test records"):
        study_table(evals, preds, out, CFG)
