"""`snakemake sweep`: variants re-train only what they reach and are chosen on validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from pipeline.evaluation.evaluate import EvalConfig, evaluate_predictions
from pipeline.evaluation.sweep import SweepOutputs, SweepRun, sweep_table
from pipeline.registry import models
from pipeline.run_checks import variant_errors
from pipeline.runs import Run, Stages, parse_variants, repeats_default
from tests.snakemake_helpers import REPO, edited_config, planned_rules, snakemake

TEST_CONFIG = REPO / ".test/config.yaml"
SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
OBJECTIVES = SCHEMA["properties"]["pretrain"]["properties"]["objective"]["enum"]
STAGES = Stages(models(), OBJECTIVES)


def _config() -> dict:
    config: dict = {}
    validate(config, str(SCHEMA_PATH))
    return config


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            {"name": "a", "set": {"distilled.tempreature": 1.0}},
            "(a): distilled: Unevaluated properties are not allowed ('tempreature'",
        ),
        ({"name": "a", "set": {"model.ecg_encoder.d_model": 8}}, "(a): model is not a training"),
        ({"name": "a", "set": {"distilled.mix": "half"}}, "(a): distilled.mix: 'half' is not"),
        ({"name": "default", "set": {"distilled.mix": 0.1}}, "(default): name must match"),
        (
            {"name": "a", "set": {"finetune_diagnoses.freeze_blocks": 9}},
            "(a): finetune_diagnoses.freeze_blocks: 9 > model.ecg_encoder.n_layers",
        ),
    ],
)
def test_a_bad_variant_is_named_with_its_key(variant: dict, expected: str) -> None:
    config = _config()
    config["sweep"]["variants"] = [variant]
    errors = variant_errors(config, SCHEMA, STAGES)
    assert len(errors) == 1 and expected in errors[0], errors


def test_a_variant_equal_to_the_config_repeats_the_default_and_is_no_error() -> None:
    # After a user adopts a variant's setting as the default, the variant must not stop
    # the main workflow; the sweep leaves it out.
    config = _config()
    same = {"distilled.mix": config["distilled"]["mix"]}
    config["sweep"]["variants"] = [{"name": "a", "set": same}]
    assert variant_errors(config, SCHEMA, STAGES) == []
    (variant,) = parse_variants(config["sweep"]["variants"])
    assert repeats_default(config, variant)
    assert not repeats_default(config, Run("b", {"distilled.mix": 0.1}, "sweep"))


def test_a_repeated_variant_name_is_an_error() -> None:
    config = _config()
    config["sweep"]["variants"] = [
        {"name": "a", "set": {"distilled.mix": 0.1}},
        {"name": "a", "set": {"distilled.mix": 0.2}},
    ]
    assert variant_errors(config, SCHEMA, STAGES) == [
        "sweep.variants[1] (a): the name is used twice"
    ]


def test_the_shipped_grids_are_valid() -> None:
    config = _config()
    assert variant_errors(config, SCHEMA, STAGES) == []
    config["sweep"] = yaml.safe_load(TEST_CONFIG.read_text())["sweep"]
    assert variant_errors(config, SCHEMA, STAGES) == []


# --- the table -------------------------------------------------------------------------
CFG = EvalConfig(n_bootstrap=200, seed=1)
N = 200


def _run(root: Path, variant: str, val: float, strength: float, ids: np.ndarray) -> SweepRun:
    """A trained 'distilled' model on disk: model.json, test predictions and evaluation."""
    target = (np.random.default_rng(0).random((N, 5)) < 0.3).astype(np.float32)  # shared
    rng = np.random.default_rng(int(strength * 100))
    prob = 1 / (1 + np.exp(-(3 * strength * target + rng.normal(size=target.shape))))
    model_dir = root / variant / "distilled"
    model_dir.mkdir(parents=True)
    training = {"head_val_auroc": val, "best_epoch": 3.0, "epochs_run": 8.0}
    meta = {"model": "distilled", "training": training, "num_threads": 2}
    (model_dir / "model.json").write_text(json.dumps(meta))
    pred = root / variant / "distilled.npz"
    labels = np.array([f"L{k}" for k in range(5)])
    np.savez(
        pred, study_id=ids, prob=prob, target=target, labels=labels, task=np.array("diagnoses")
    )
    evaluation = root / variant / "distilled.json"
    evaluate_predictions(pred, evaluation, root / variant / "distilled.csv", CFG)
    return SweepRun(variant, "distilled", model_dir, evaluation, pred)


def _outputs(root: Path) -> SweepOutputs:
    return SweepOutputs(*(root / f"sweep.{ext}" for ext in ("md", "csv", "json", "png")))


def test_sweep_table_chooses_on_validation_and_pairs_the_test(tmp_path: Path) -> None:
    ids = np.arange(N, dtype=np.int64) + 10**6
    runs = [
        _run(tmp_path, "default", 0.70, 0.5, ids),
        _run(tmp_path, "strong_test", 0.69, 0.9, ids),  # better on test, worse on val
        _run(tmp_path, "best_val", 0.72, 0.4, ids),
    ]
    settings = {"strong_test": {"distilled.mix": 0.75}, "best_val": {"distilled.mix": 0.25}}
    out = _outputs(tmp_path)
    summary = sweep_table(runs, settings, out, CFG)
    assert summary["chosen"] == {"distilled": "best_val"}  # validation decides, not test
    rows = {r["variant"]: r for r in summary["rows"]}
    assert rows["best_val"]["val_minus_default"] == pytest.approx(0.02)
    diff = rows["strong_test"]["test_minus_default"]
    expected = rows["strong_test"]["test_auroc"]["point"] - rows["default"]["test_auroc"]["point"]
    assert diff["point"] == pytest.approx(expected) and diff["point"] > 0
    assert diff["ci_low"] <= diff["point"] <= diff["ci_high"]
    md = out.md.read_text()
    assert "## distilled: chosen `best_val`" in md and "| **best_val** | distilled.mix=0.25" in md
    assert "Warning" not in md  # same thread count everywhere
    assert out.csv.read_text().count("\n") == 4 and out.plot.stat().st_size > 10_000


def test_sweep_table_keeps_the_default_on_a_tie_and_flags_thread_counts(tmp_path: Path) -> None:
    ids = np.arange(N, dtype=np.int64)
    runs = [_run(tmp_path, "default", 0.70, 0.5, ids), _run(tmp_path, "same", 0.70, 0.6, ids)]
    meta = json.loads((runs[1].model_dir / "model.json").read_text())
    (runs[1].model_dir / "model.json").write_text(json.dumps({**meta, "num_threads": 1}))
    summary = sweep_table(runs, {"same": {"distilled.mix": 0.4}}, _outputs(tmp_path), CFG)
    assert summary["chosen"] == {"distilled": "default"}
    assert "different thread counts" in (tmp_path / "sweep.md").read_text()


def test_sweep_table_refuses_a_variant_tested_on_other_records(tmp_path: Path) -> None:
    ids = np.arange(N, dtype=np.int64)
    runs = [_run(tmp_path, "default", 0.7, 0.5, ids), _run(tmp_path, "other", 0.7, 0.5, ids + 1)]
    with pytest.raises(ValueError, match="same test records"):
        sweep_table(runs, {"other": {"distilled.mix": 0.4}}, _outputs(tmp_path), CFG)
    assert not (tmp_path / "sweep.md").exists()


# --- the workflow ----------------------------------------------------------------------
# .test/config.yaml's three variants: the student, a shared stage-2 section, stage 1.
# The pipeline's own rules, one job per stage a variant re-trains (its run's {run} prefix).
SWEEP_RULES = {
    "pretrain": 1,
    "pretrain_ecg_only": 1,
    # distilled; stage 2's three models and the random-init control; stage 1's four models
    "train_model": 1 + 4 + 4,
    "evaluate": 1 + 4 + 4,
    "sweep_table": 1,
    "sweep": 1,
}


def test_sweep_plans_only_the_variants_stages(tiny_run: Path) -> None:
    planned = planned_rules(snakemake(tiny_run, TEST_CONFIG, "-n", "sweep"))
    assert planned == SWEEP_RULES


def test_editing_the_sweep_reruns_nothing_of_the_default_run(
    tiny_run: Path, tmp_path: Path
) -> None:
    variants = [{"name": "x", "set": {"baselines.lr": 0.01}}]
    cfg = edited_config(tmp_path / "edited.yaml", TEST_CONFIG, {"sweep.variants": variants})
    assert planned_rules(snakemake(tiny_run, cfg, "-n")) == {}


def test_adopting_a_variants_setting_drops_it_from_the_sweep(
    tiny_run: Path, tmp_path: Path
) -> None:
    # The user made kd_mix0.25's setting the default: the workflow still builds, says so,
    # and the sweep trains the other variants only.
    cfg = edited_config(tmp_path / "edited.yaml", TEST_CONFIG, {"distilled.mix": 0.25})
    proc = snakemake(tiny_run, cfg, "-n", "sweep")
    assert "variant kd_mix0.25 (distilled.mix=0.25) equals the config" in proc.stdout + proc.stderr
    assert "sweep/kd_mix0.25" not in proc.stdout
    assert planned_rules(proc)["train_model"] == SWEEP_RULES["train_model"] - 1


def test_a_bad_variant_stops_the_workflow_naming_it(tiny_run: Path, tmp_path: Path) -> None:
    variants = [{"name": "typo", "set": {"distilled.temprature": 1.0}}]
    cfg = edited_config(tmp_path / "edited.yaml", TEST_CONFIG, {"sweep.variants": variants})
    proc = snakemake(tiny_run, cfg, "-n", "sweep", check=False)
    assert proc.returncode != 0
    assert "sweep.variants[0] (typo): distilled" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def swept(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny run (which tests must not modify) with the sweep run on it."""
    workdir = tmp_path_factory.mktemp("sweep") / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    snakemake(workdir, TEST_CONFIG, "--cores", "2", "sweep")
    return workdir


def test_sweep_trains_each_variant_with_its_settings(swept: Path) -> None:
    root = swept / "results/sweep"
    meta = json.loads((root / "kd_mix0.25/models/distilled/model.json").read_text())
    assert meta["config"]["mix"] == 0.25
    meta = json.loads((root / "ft_lr1e-4/models/method_diagnoses/model.json").read_text())
    assert meta["config"]["encoder_lr"] == 1e-4
    # stage 3 of a variant starts from that variant's stage 2, not the default run's
    assert (root / "ft_lr1e-4/models/method_labs/model.json").is_file()
    summary = json.loads((root / "sweep.json").read_text())
    assert set(summary["chosen"]) == {
        "method_diagnoses",
        "method_labs",
        "method_regularised",
        "ssl_ecg_only",
        "random_init_finetune",
        "distilled",
    }
    for row in summary["rows"]:
        assert 0 <= row["val_auroc"] <= 1 and 0 <= row["test_auroc"]["point"] <= 1
    md = (root / "sweep.md").read_text()
    assert "pretrain.barlow_twins.lambd=0.05" in md and "config as is" in md
    # the default run is untouched and complete
    assert planned_rules(snakemake(swept, TEST_CONFIG, "-n")) == {}
    assert planned_rules(snakemake(swept, TEST_CONFIG, "-n", "sweep")) == {}
