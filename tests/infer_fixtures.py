"""A small but complete method_labs model directory for the inference tests.

The weights are the seeded initial weights (no training: the tests check reading, scoring
and export, which must reproduce whatever the weights are); model.json is written by the
training code's own ``model_meta`` with the shard stage's preprocessing, so the directory
is what ``finetune_labs`` writes, at MIMIC rates (500 Hz records -> 100 Hz, 4 crops of 250).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from pipeline.data.shard import ShardConfig
from pipeline.models import build_ecg_encoder
from pipeline.models.supervised import SupervisedModel, make_head
from pipeline.registry import spec
from pipeline.train.model import model_meta
from pipeline.train.stage import save_weights
from pipeline.train.supervised import StageConfig
from tests.train_fixtures import model_cfg

DX = ["I48", "I50", "N18", "E87"]
DX_NAMES = ["Atrial fibrillation", "Heart failure", "Chronic kidney disease", "Electrolytes"]
LABS = ["Potassium_high", "Sodium_low", "Creatinine_high"]


def _mlp(in_dim: int, out_dim: int, hidden: int) -> dict[str, Any]:
    return {"kind": "mlp", "in_dim": in_dim, "hidden": [hidden], "out_dim": out_dim, "dropout": 0.1}


def write_model_dir(
    root: Path,
    seed: int = 0,
    ecg_encoder: dict[str, Any] | None = None,
    dx: Sequence[str] = DX,
    labs: Sequence[str] = LABS,
    hidden: int = 16,
) -> Path:
    """Write ``root/method_labs`` (+ label manifests beside it); returns the model dir.

    ``ecg_encoder`` defaults to the test size (S4 2 x 16); bench/predict.py passes the
    config sizes.
    """
    torch.manual_seed(seed)
    encoder = build_ecg_encoder(ecg_encoder or model_cfg(d_model=16, n_layers=2)["ecg_encoder"])
    dx_cfg = {**_mlp(encoder.out_dim, len(dx), hidden), "task": "diagnoses", "labels": list(dx)}
    lab_cfg = _mlp(encoder.out_dim, len(labs), hidden)
    model = SupervisedModel(
        spec("method_labs"),
        encoder,
        make_head(lab_cfg),
        lab_cfg,
        diagnosis_head=make_head(dx_cfg),
        diagnosis_head_cfg=dx_cfg,
        encoder_frozen=True,
    )
    prep = ShardConfig(n_groups=1, shard_size=8, fs_out=100, clip_mv=3.0).preprocessing()
    meta = model_meta(
        spec("method_labs"), model, list(labs), None, StageConfig(), 1, 0.5, None,
        prep.with_crops(250, 4).to_dict(),
    )  # fmt: skip
    out = root / "method_labs"
    out.mkdir(parents=True)
    save_weights(out / "model.safetensors", model)
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    names = dict(zip(DX, DX_NAMES, strict=True))
    pl.DataFrame(
        {"code": dx, "description": [names.get(c, c) for c in dx], "count": [9] * len(dx)}
    ).write_csv(root / "label_manifest.tsv", separator="\t")
    pl.DataFrame({"target": labs, "n_pos_val": [3] * len(labs)}).write_csv(
        root / "lab_targets_selected.tsv", separator="\t"
    )
    return out
