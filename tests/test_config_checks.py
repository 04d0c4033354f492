"""Settings that contradict each other stop `snakemake -n` before any job is planned.

Before these checks, `n_folds: 1` or a fold in both train and val passed the schema and the
dry run and failed only in make_splits, after 18 conversion and shard jobs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.config_checks import coerce_cli_strings, config_errors, cuda_errors
from tests.snakemake_helpers import REPO, planned_rules, snakemake

TEST_CONFIG = REPO / ".test/config.yaml"
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())

# Settings the schema refuses, each alone: (override on top of .test/config.yaml, message).
SCHEMA_CASES = {
    "one_fold": ("splits: {n_folds: 1, train_folds: [0], val_folds: [0], test_folds: [0]}",
                 "1 is less than the minimum of 3"),
    "fold_listed_twice": ("splits: {val_folds: [3, 3]}", "has non-unique elements"),
    "empty_role": ("splits: {test_folds: []}", "should be non-empty"),
    "min_count_zero": ("labels: {min_count: 0}", "0 is less than the minimum of 1"),
}  # fmt: skip
# Settings that contradict each other, all in one config: every one must be reported.
CROSS_KEY = """\
splits: {train_folds: [0, 1, 2], val_folds: [2], test_folds: [5], age_bins: [50, 40]}
train: {crop_samples: 300, eval_crops: 4}
finetune_diagnoses: {freeze_blocks: 2}
"""
CROSS_KEY_MESSAGES = [
    "config splits.val_folds: fold 2 is also in splits.train_folds",
    "config splits.test_folds: fold 5 outside [0, n_folds=5)",
    "config splits.age_bins: edges must increase strictly",
    "config train.eval_crops: 4 crops of 300 samples do not fit the 1000 samples",
    "config finetune_diagnoses.freeze_blocks: 2 > model.ecg_encoder.n_layers=1",
]


def _refused(tmp_path: Path, override: str) -> str:
    (tmp_path / "bad.yaml").write_text(override + "\n")
    proc = snakemake(tmp_path, TEST_CONFIG, "bad.yaml", "-n", check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert planned_rules(proc) == {}  # stopped before the DAG was built
    assert not (tmp_path / "results").exists()
    return out


def test_dry_run_refuses_a_single_fold(tmp_path: Path) -> None:
    override, expected = SCHEMA_CASES["one_fold"]
    out = _refused(tmp_path, override)
    assert expected in out, out[-2000:]


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_schema_refuses_bad_split_and_count_settings(case: str) -> None:
    # test_config.py shows a schema error stops the dry run; here only what the schema says
    from snakemake.utils import validate

    override, expected = SCHEMA_CASES[case]
    config = yaml.safe_load((REPO / ".test/config.yaml").read_text())
    for key, value in yaml.safe_load(override).items():
        config[key] |= value
    with pytest.raises(Exception, match=re.escape(expected)):
        validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))


def test_dry_run_reports_every_contradicting_setting(tmp_path: Path) -> None:
    out = _refused(tmp_path, CROSS_KEY)
    missing = [m for m in CROSS_KEY_MESSAGES if m not in out]
    assert not missing, out[-3000:]


def test_crop_longer_than_a_record_is_refused() -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["train"]["crop_samples"] = 1200
    assert config_errors(config) == ["train.crop_samples: 1200 > 1000 samples per record at 100 Hz"]


def test_every_shipped_config_passes_the_checks() -> None:
    from snakemake.utils import validate

    for name in ("config.yaml", ".test/config.yaml", "configs/mimic.yaml"):
        config = yaml.safe_load((REPO / name).read_text())
        validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
        assert config_errors(config) == [], name


def test_cli_strings_are_typed_by_the_schema() -> None:
    # what `--config source='{synthetic: false, ...}' splits='{...}'` delivers
    config = {
        "source": {"synthetic": "false", "mimic_iv": "/data/mimic-iv/3.1"},
        "splits": {"n_folds": "5", "train_folds": ["0", "1"], "file": "null"},
        "train": {"device": "cpu"},
        "pretrain": {"lr": "1e-3", "epochs": "many"},
    }
    coerce_cli_strings(config, SCHEMA)
    assert config == {
        "source": {"synthetic": False, "mimic_iv": "/data/mimic-iv/3.1"},  # paths stay strings
        "splits": {"n_folds": 5, "train_folds": [0, 1], "file": None},
        "train": {"device": "cpu"},
        "pretrain": {"lr": 0.001, "epochs": "many"},  # unparseable: left for the schema error
    }


def test_cuda_without_cuda_stops_before_the_first_job(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():  # the check is about machines without CUDA
        assert cuda_errors({"train": {"device": "cuda"}}) == []
        return
    (tmp_path / "cuda.yaml").write_text("train: {device: cuda}\n")
    proc = snakemake(tmp_path, TEST_CONFIG, "cuda.yaml", "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config train.device: 'cuda', but torch" in out and "sees no CUDA device" in out
    assert not (tmp_path / "results").exists()  # not even the synthetic cohort was generated
    assert cuda_errors({"train": {"device": "auto"}}) == []
