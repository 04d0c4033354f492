"""distilled: an ECG-only student of the multimodal classifier on the tiny training world.

The student is signal-only's model trained on a mix of the labels and the teacher's softened
predictions (Hinton et al. 2015): with mix 0 it is signal-only bit for bit; with mix 1 it
follows the teacher more closely than a student that never saw it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import build_world, model_cfg, runtime, stage_cfg, train_cfg

from pipeline.train.data import read_ids
from pipeline.train.model import predict_model
from pipeline.train.stage_config import DistilledConfig
from pipeline.train.supervised import train_supervised
from pipeline.train.teacher import teacher_logits

EPOCHS = {"epochs": 5}


def _distilled(mix: float, temperature: float = 2.0) -> DistilledConfig:
    return DistilledConfig(**asdict(stage_cfg(**EPOCHS)), mix=mix, temperature=temperature)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The teacher, signal-only, and students with mix 0, 0.5 and 1."""
    root = tmp_path_factory.mktemp("distilled")
    world = build_world(root)
    shared = (model_cfg(), runtime())
    plain = world.supervised_inputs("diagnoses")
    teacher = root / "multimodal_classification"
    train_supervised(
        "multimodal_classification",
        plain,
        teacher,
        root / "teacher.npz",
        stage_cfg(**EPOCHS),
        *shared,
    )
    train_supervised(
        "signal_only", plain, root / "signal_only", root / "so.npz", stage_cfg(**EPOCHS), *shared
    )
    taught = world.supervised_inputs("diagnoses", teacher_dir=teacher)
    for mix in (0.0, 0.5, 1.0):
        name = f"mix{mix:g}"
        train_supervised(
            "distilled", taught, root / name, root / f"{name}.npz", _distilled(mix), *shared
        )
    return root


def _weights(root: Path, name: str) -> dict:
    return load_file(str(root / name / "model.safetensors"))


def test_mix_zero_is_signal_only_bit_for_bit(runs: Path) -> None:
    """The teacher is predicted, but its loading must not move the student's RNG either."""
    a, b = _weights(runs, "signal_only"), _weights(runs, "mix0")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert np.array_equal(np.load(runs / "so.npz")["prob"], np.load(runs / "mix0.npz")["prob"])


def test_history_logs_both_terms(runs: Path) -> None:
    history = pl.read_csv(runs / "mix0.5" / "history.tsv", separator="\t")
    trained = history.filter(pl.col("epoch") > 0)
    assert {"bce", "distill"} <= set(history.columns)
    expected = 0.5 * trained["bce"] + 0.5 * trained["distill"]
    assert np.allclose(trained["loss"].to_numpy(), expected.to_numpy(), rtol=1e-4)
    meta = json.loads((runs / "mix0.5" / "model.json").read_text())
    assert meta["spec"]["tabular"] is None and meta["tabular"] is None  # ECG only
    assert meta["config"]["mix"] == 0.5 and meta["config"]["temperature"] == 2.0


def test_a_student_of_the_teacher_follows_it(runs: Path) -> None:
    """On the training records, the mix-1 student's logits are nearer the teacher's than those
    of the student that never saw the teacher (mix 0)."""
    shard_index = runs / "shards" / "index.parquet"
    train_ids = read_ids(runs / "splits" / "train_ids.parquet")
    names = json.loads((runs / "multimodal_classification" / "model.json").read_text())["labels"]
    target = teacher_logits(
        runs / "multimodal_classification",
        shard_index,
        train_ids,
        names,
        train_cfg(),
        features=runs / "features.parquet",
        batch_size=32,
        device=torch.device("cpu"),
    )

    def gap(name: str) -> float:
        p = predict_model(runs / name, shard_index, train_ids, train_cfg()).astype(np.float64)
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return float(np.mean(np.abs(np.log(p / (1 - p)) - target)))

    assert gap("mix1") < gap("mix0")


def test_teacher_with_other_labels_is_refused(runs: Path, tmp_path: Path) -> None:
    fake = tmp_path / "teacher"
    fake.mkdir()
    meta = json.loads((runs / "multimodal_classification" / "model.json").read_text())
    (fake / "model.json").write_text(json.dumps({**meta, "labels": ["I48", "XXX", "N18"]}))
    with pytest.raises(
        ValueError,
        match=r"teacher's 3 labels are not the student's 3 \(first difference at position 1\)",
    ):
        teacher_logits(
            fake,
            runs / "shards" / "index.parquet",
            np.array([1]),
            ["I48", "I50", "N18"],
            train_cfg(),
            features=None,
            batch_size=8,
            device=torch.device("cpu"),
        )


def test_distilled_without_its_teacher_is_refused(tmp_path: Path) -> None:
    world = build_world(tmp_path, n_train=16, n_val=8, n_test=8)
    with pytest.raises(ValueError, match="distilled is distilled from multimodal_classification"):
        train_supervised(
            "distilled",
            world.supervised_inputs("diagnoses"),
            tmp_path / "out",
            tmp_path / "out.npz",
            _distilled(0.5),
            model_cfg(),
            runtime(),
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"mix": 2.0}, "distilled.mix"), ({"temperature": 0.0}, "distilled.temperature")],
)
def test_bad_section_values_name_the_key(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DistilledConfig(**kw)
