"""Builders of tiny but real training inputs (shards, features, labels, splits) for tests.

The ECGs carry a learnable signal: latent class ``y1`` sets the amplitude of a 3 Hz wave on
the limb leads and ``y2`` adds a 7 Hz wave on the chest leads. A tabular lab feature is
correlated with ``y1`` (what Barlow Twins can align), diagnosis labels and lab targets are
derived from the latents, and lab targets are partly missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from pipeline.data.shard_check import describe, shards_metadata
from pipeline.tracking import TrackingConfig
from pipeline.train.engine import TrainConfig
from pipeline.train.pretrain import PretrainConfig, PretrainInputs
from pipeline.train.stage import StageRuntime
from pipeline.train.supervised import StageConfig, SupervisedInputs

FS = 20  # Hz: tiny records keep the S4 cheap
LENGTH = 200  # samples per record (10 s)
CROP = 50  # 2.5 s
LABELS = ["I48", "I50", "N18"]
LAB_TARGETS = ["Potassium_high", "Sodium_low"]


@dataclass(frozen=True)
class TinyWorld:
    root: Path
    shard_index: Path
    features: Path
    feature_manifest: Path
    labels: Path
    label_manifest: Path
    lab_targets: Path
    lab_targets_selected: Path
    ids: dict[str, Path]

    def pretrain_inputs(self) -> PretrainInputs:
        return PretrainInputs(
            shard_index=self.shard_index,
            features=self.features,
            feature_manifest=self.feature_manifest,
            labels=self.labels,
            label_manifest=self.label_manifest,
            train_ids=self.ids["train"],
            val_ids=self.ids["val"],
        )

    def supervised_inputs(
        self, task: str, init_dir: Path | None = None, teacher_dir: Path | None = None
    ) -> SupervisedInputs:
        diag = task == "diagnoses"
        return SupervisedInputs(
            shard_index=self.shard_index,
            train_ids=self.ids["train"],
            val_ids=self.ids["val"],
            test_ids=self.ids["test"],
            targets=self.labels if diag else self.lab_targets,
            target_names=self.label_manifest if diag else self.lab_targets_selected,
            features=self.features,
            feature_manifest=self.feature_manifest,
            init_dir=init_dir,
            teacher_dir=teacher_dir,
        )


def model_cfg(d_model: int = 16, n_layers: int = 2) -> dict[str, Any]:
    """The ``model`` section at test size."""
    return {
        "ecg_encoder": {
            "name": "s4",
            "d_model": d_model,
            "n_layers": n_layers,
            "d_state": 4,
            "mode": "dplr",
            "bidirectional": True,
            "dropout": 0.1,
            "kernel_backend": "torch",
        },
        "tabular_encoder": {"name": "mlp", "hidden": [16, 16], "dropout": 0.1, "cat_embed_dim": 4},
    }


def train_cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(
        **{"device": "cpu", "num_threads": 1, "crop_samples": CROP, "eval_crops": 4, **kw}
    )


def tracking() -> TrackingConfig:
    return TrackingConfig(tracking_uri="", experiment="test", results_dir="results")


def runtime(train: TrainConfig | None = None, **kw: Any) -> StageRuntime:
    """How a test stage runs: CPU, one thread, tracking off (``kw``: checkpoint_dir,
    threads, on_epoch_end)."""
    return StageRuntime(train or train_cfg(), tracking(), **kw)


# The loop settings the training tests were written for: a constant rate, no warm-up, no
# early stop, a random head (the config's defaults, cosine / probe, are for real runs).
PLAIN_LOOP = {"schedule": "constant", "warmup_epochs": 0.0, "patience": 0}


def pretrain_cfg(**kw: Any) -> PretrainConfig:
    base = {"epochs": 3, "batch_size": 16, "lr": 3e-3, "embed_dim": 16, "projector_hidden": 32}
    return PretrainConfig(**{**base, **PLAIN_LOOP, **kw})


def stage_cfg(**kw: Any) -> StageConfig:
    base = {"epochs": 2, "batch_size": 16, "lr": 3e-3, "head_hidden": (16,)}
    head = {"head_init": "random", "head_init_lr": 1e-3, "head_refit": False}
    return StageConfig(**{**base, **PLAIN_LOOP, **head, **kw})


def build_world(
    root: Path,
    n_train: int = 64,
    n_val: int = 24,
    n_test: int = 24,
    length: int = LENGTH,
    fs: int = FS,
) -> TinyWorld:
    """Write every input file of the training stages under ``root`` (records of ``length``)."""
    rng = np.random.default_rng(0)
    n = n_train + n_val + n_test
    study_id = 40_000_000 + np.arange(n, dtype=np.int64) * 7
    y1 = rng.random(n) < 0.4
    y2 = rng.random(n) < 0.3
    t = np.arange(length) / fs
    ecg = 0.05 * rng.standard_normal((n, 12, length))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    ecg[:, :6] += (0.2 + 0.8 * y1[:, None, None]) * np.sin(2 * np.pi * 3 * t + phase)
    ecg[:, 6:] += 0.6 * y2[:, None, None] * np.sin(2 * np.pi * 7 * t + phase)
    shard_index = _write_shards(root / "shards", study_id, ecg.astype(np.float16))

    lab_value = np.where(y1, 5.5, 4.0) + 0.3 * rng.standard_normal(n)
    lab_value[rng.random(n) < 0.2] = np.nan
    features = pl.DataFrame(
        {
            "study_id": study_id,
            "age": rng.normal(60, 15, n),
            "potassium_mean": pl.Series(lab_value).fill_nan(None),
            "gender": rng.choice(["F", "M"], n).tolist(),
            "acuity": [None if rng.random() < 0.2 else str(rng.integers(1, 4)) for _ in range(n)],
        }
    )
    features.write_parquet(root / "features.parquet")
    pl.DataFrame(
        {
            "column": ["age", "potassium_mean", "gender", "acuity"],
            "group": ["routine", "lab", "routine", "routine"],
            "kind": ["continuous", "continuous", "categorical", "categorical"],
        }
    ).write_csv(root / "feature_manifest.tsv", separator="\t")

    y3 = rng.random(n) < 0.25
    labels = pl.DataFrame(
        {"study_id": study_id}
        | {
            c: pl.Series(v.astype(np.uint8), dtype=pl.UInt8)
            for c, v in zip(LABELS, (y1, y2, y3), strict=True)
        }
    )
    labels.write_parquet(root / "labels.parquet")
    pl.DataFrame(
        {
            "code": LABELS,
            "description": ["AF", "HF", "CKD"],
            "count": [int(y.sum()) for y in (y1, y2, y3)],
        }
    ).write_csv(root / "label_manifest.tsv", separator="\t")

    def lab(y: np.ndarray) -> pl.Series:
        vals = [None if rng.random() < 0.3 else int(v) for v in y]
        return pl.Series(vals, dtype=pl.Int8)

    pl.DataFrame(
        {"study_id": study_id, LAB_TARGETS[0]: lab(y1), LAB_TARGETS[1]: lab(y2)}
    ).write_parquet(root / "lab_targets.parquet")
    pl.DataFrame(
        {
            "target": LAB_TARGETS,
            "n_pos_val": [5, 5],
            "n_neg_val": [5, 5],
            "n_pos_test": [5, 5],
            "n_neg_test": [5, 5],
        }
    ).write_csv(root / "lab_targets_selected.tsv", separator="\t")

    ids = {}
    bounds = {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, n),
    }
    for part, (a, b) in bounds.items():
        ids[part] = root / "splits" / f"{part}_ids.parquet"
        ids[part].parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(
            {
                "study_id": pl.Series(study_id[a:b], dtype=pl.Int64),
                "fold": pl.Series(np.zeros(b - a, dtype=np.int32), dtype=pl.Int32),
            }
        ).write_parquet(ids[part])
    return TinyWorld(
        root=root,
        shard_index=shard_index,
        features=root / "features.parquet",
        feature_manifest=root / "feature_manifest.tsv",
        labels=root / "labels.parquet",
        label_manifest=root / "label_manifest.tsv",
        lab_targets=root / "lab_targets.parquet",
        lab_targets_selected=root / "lab_targets_selected.tsv",
        ids=ids,
    )


def _write_shards(shard_root: Path, study_id: np.ndarray, ecg: np.ndarray, size: int = 40) -> Path:
    """Shards in the contract's layout: group_0/shard_XXXXX.npy + merged index.parquet."""
    group = shard_root / "group_0"
    group.mkdir(parents=True, exist_ok=True)
    shard, offset = [], []
    for k, start in enumerate(range(0, len(study_id), size)):
        name = f"group_0/shard_{k:05d}.npy"
        np.save(shard_root / name, ecg[start : start + size])
        shard += [name] * len(ecg[start : start + size])
        offset += list(range(len(ecg[start : start + size])))
    index = shard_root / "index.parquet"
    frame = pl.DataFrame(
        {
            "study_id": pl.Series(study_id, dtype=pl.Int64),
            "shard": shard,
            "offset": pl.Series(offset, dtype=pl.Int32),
        }
    )
    # the sizes and hashes the store checks, as the shard stage records them
    entries = {name: describe(shard_root / name) for name in dict.fromkeys(shard)}
    pq.write_table(frame.to_arrow().replace_schema_metadata(shards_metadata(entries)), index)
    return index
