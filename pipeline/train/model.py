"""Building a supervised model of pipeline.registry for training, and its model.json.

The network itself (:class:`pipeline.models.supervised.SupervisedModel`) and reloading it
from a model directory (:func:`pipeline.models.supervised.load_supervised`) live in
:mod:`pipeline.models.supervised`, which inference uses without importing training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file

from pipeline.data.tabular import TabularPreprocessor, tabular_encoder_meta
from pipeline.models import (
    ECGEncoder,
    build_ecg_encoder,
    build_tabular_encoder,
    ecg_encoder_config,
)
from pipeline.models.supervised import (
    SupervisedModel,
    load_supervised,
    make_head,
    read_model_json,
)
from pipeline.registry import PRETRAINED, ModelSpec, architecture
from pipeline.train.data import ECGDataset, EpochLoader, open_store
from pipeline.train.engine import TrainConfig
from pipeline.train.predict import predict_probs
from pipeline.train.reproducibility import runtime_record
from pipeline.train.stage_config import StageConfig


def build_supervised(
    spec: ModelSpec,
    cfg: StageConfig,
    model_cfg: Mapping[str, Any],
    n_out: int,
    prep: TabularPreprocessor | None,
    init_dir: Path | None,
) -> SupervisedModel:
    """A fresh or initialised model for ``spec`` with its freezing applied."""
    dropout = float(model_cfg["ecg_encoder"]["dropout"])
    if spec.init is not None and spec.init not in PRETRAINED:
        if init_dir is None:
            raise ValueError(f"{spec.name} needs the {spec.init} model directory")
        base, _ = load_supervised(Path(init_dir))
        encoder, diag_head = base.encoder, base.head
        for p in diag_head.parameters():
            p.requires_grad_(False)
        if cfg.freeze_encoder:
            for p in encoder.parameters():
                p.requires_grad_(False)
        head_cfg = _mlp_cfg(encoder.out_dim, cfg.head_hidden, n_out, dropout, cfg.head_norm)
        return SupervisedModel(
            spec,
            encoder,
            make_head(head_cfg),
            head_cfg,
            diagnosis_head=diag_head,
            diagnosis_head_cfg=base.head_cfg,
            encoder_frozen=cfg.freeze_encoder,
        )
    if spec.init in PRETRAINED:
        if init_dir is None:
            raise ValueError(f"{spec.name} needs the {spec.init} directory")
        meta = read_model_json(Path(init_dir) / "model.json")
        encoder = build_ecg_encoder(meta["ecg_encoder"])
        encoder.load_state_dict(load_file(str(Path(init_dir) / "encoder.safetensors")))
        _freeze(encoder, cfg.freeze_blocks)
        head_cfg = _mlp_cfg(encoder.out_dim, cfg.head_hidden, n_out, dropout, cfg.head_norm)
        return SupervisedModel(spec, encoder, make_head(head_cfg), head_cfg)
    encoder = build_ecg_encoder(model_cfg["ecg_encoder"])
    # A fine-tuning section on an untrained encoder (random_init_finetune) freezes as stage 2
    # does; the baselines' freeze_blocks is 0, which leaves every parameter trainable.
    _freeze(encoder, cfg.freeze_blocks)
    tab_encoder, in_dim = None, encoder.out_dim
    if spec.tabular is not None:
        assert prep is not None
        tab_encoder = build_tabular_encoder(
            model_cfg["tabular_encoder"], prep.n_continuous, prep.cat_cardinalities
        )
        in_dim += tab_encoder.out_dim
    head_cfg = (
        {"kind": "linear", "in_dim": in_dim, "out_dim": n_out, "norm": cfg.head_norm}
        if spec.head == "linear"
        else _mlp_cfg(in_dim, cfg.head_hidden, n_out, dropout, cfg.head_norm)
    )
    return SupervisedModel(spec, encoder, make_head(head_cfg), head_cfg, tab_encoder=tab_encoder)


def _freeze(encoder: ECGEncoder, k: int) -> None:
    if k > len(encoder.blocks):
        raise ValueError(f"freeze_blocks={k} > {len(encoder.blocks)} blocks")
    encoder.freeze_blocks(k)


def param_groups(
    model: SupervisedModel, cfg: StageConfig, l2sp: bool = False
) -> list[dict[str, Any]]:
    """Head at ``lr``; trainable encoder parameters at ``encoder_lr`` when the section sets
    one (the fine-tuning sections, on a stage-1 or an untrained encoder), else one rate.

    With ``l2sp`` the encoder has its own group without weight decay: L2-SP replaces the
    pull towards zero by one towards the stage-1 weights (Li et al. 2018).
    """
    head = [p for n, p in model.named_parameters() if p.requires_grad and not _is_encoder(n)]
    enc = [p for n, p in model.named_parameters() if p.requires_grad and _is_encoder(n)]
    if not l2sp and not cfg.encoder_lr:  # the baselines: one rate
        return [{"params": head + enc, "lr": cfg.lr, "name": "all"}]
    groups: list[dict[str, Any]] = [{"params": head, "lr": cfg.lr, "name": "head"}]
    if enc:
        enc_group = {"params": enc, "lr": cfg.encoder_lr or cfg.lr, "name": "encoder"}
        groups.append(enc_group | ({"weight_decay": 0.0} if l2sp else {}))
    return groups


def _is_encoder(name: str) -> bool:
    return name.startswith("encoder.")


def _mlp_cfg(
    in_dim: int, hidden: tuple[int, ...], out_dim: int, dropout: float, norm: bool = False
) -> dict[str, Any]:
    return {
        "kind": "mlp",
        "in_dim": in_dim,
        "hidden": list(hidden),
        "out_dim": out_dim,
        "dropout": dropout,
        "norm": norm,
    }


def model_meta(
    spec: ModelSpec,
    model: SupervisedModel,
    names: list[str],
    prep: TabularPreprocessor | None,
    cfg: StageConfig,
    best_epoch: int,
    best_val_auroc: float,
    tab_cfg: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """model.json: everything :func:`load_supervised` needs, plus provenance.

    ``preprocessing`` (:func:`pipeline.data.preprocessing.training_preprocessing`) is what
    turns a raw record into the encoder's input; inference reads it from model.json.
    """
    heads: dict[str, Any] = {"head": {**model.head_cfg, "task": spec.task, "labels": names}}
    if model.diagnosis_head is not None:
        heads["diagnosis_head"] = model.diagnosis_head_cfg
    return {
        "model": spec.name,
        "spec": architecture(spec),
        "task": spec.task,
        "labels": names,
        "ecg_encoder": ecg_encoder_config(model.encoder),
        "encoder_frozen": model.encoder_frozen,
        "tabular_encoder": None if prep is None else tabular_encoder_meta(tab_cfg or {}, prep),
        "tabular": None if prep is None else prep.to_dict(),
        "heads": heads,
        "config": asdict(cfg),
        "best_epoch": best_epoch,
        "best_val_auroc": best_val_auroc,
        # results are bit-identical only for the same seed, config and thread count
        "num_threads": torch.get_num_threads(),
        "runtime": runtime_record(precision),  # what else the bytes depend on (README: Determinism)
        "preprocessing": None if preprocessing is None else dict(preprocessing),
    }


def predict_model(
    model_dir: Path,
    shard_index: Path,
    ids: np.ndarray,
    train_cfg: TrainConfig,
    head: str = "head",
    features: Path | None = None,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> np.ndarray:
    """Crop-averaged probabilities of a saved model for ``ids`` (on ``device``, default CPU).

    ``head="diagnosis_head"`` gives the diagnoses of a method_labs model, which must equal
    those of the method_diagnoses model it was built on when its encoder was frozen.
    """
    device = device or torch.device("cpu")
    model, prep = load_supervised(Path(model_dir))
    model.to(device).eval()
    tab = None
    if prep is not None:
        if features is None:
            raise ValueError(f"{model_dir} uses tabular features; pass the features file")
        tab = prep.transform(pl.read_parquet(features), ids, str(features))
    ds = ECGDataset(
        open_store(shard_index),
        ids,
        crop_samples=train_cfg.crop_samples,
        mode="eval",
        eval_crops=train_cfg.eval_crops,
        tabular=tab,
    )
    loader = EpochLoader(ds, batch_size, shuffle=False, drop_last=False)
    return predict_probs(model, loader, lambda m, b: m(b, head=head), device)
