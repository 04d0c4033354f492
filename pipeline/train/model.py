"""The supervised models (pipeline.registry): construction, and reloading from a model directory.

A model directory holds ``model.safetensors`` (every weight: ``encoder.*``, ``tab_encoder.*``,
``head.*`` and, for method_labs, ``diagnosis_head.*``) and ``model.json`` with everything
needed to rebuild the modules exactly (architecture configs, labels per head, tabular
statistics). So the method's diagnoses and lab explanations come from one file and one
embedding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file
from torch import nn

from pipeline.models import (
    ECGEncoder,
    MLPHead,
    TabularEncoder,
    build_ecg_encoder,
    build_tabular_encoder,
    ecg_encoder_config,
)
from pipeline.registry import PRETRAINED, ModelSpec, architecture
from pipeline.train.data import Batch, ECGDataset, EpochLoader, open_store
from pipeline.train.engine import TrainConfig
from pipeline.train.heads import normalised
from pipeline.train.predict import predict_probs
from pipeline.train.reproducibility import runtime_record
from pipeline.train.stage_config import StageConfig
from pipeline.train.tabular import TabularPreprocessor, tabular_encoder_meta


class SupervisedModel(nn.Module):
    """ECG encoder (+ optional tabular encoder, concatenated) and one or two heads."""

    def __init__(
        self,
        spec: ModelSpec,
        encoder: ECGEncoder,
        head: nn.Module,
        head_cfg: Mapping[str, Any],
        tab_encoder: TabularEncoder | None = None,
        diagnosis_head: nn.Module | None = None,
        diagnosis_head_cfg: Mapping[str, Any] | None = None,
        encoder_frozen: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.tab_encoder = tab_encoder
        self.head = head
        self.head_cfg = dict(head_cfg)
        self.diagnosis_head = diagnosis_head
        self.diagnosis_head_cfg = dict(diagnosis_head_cfg or {})
        self.encoder_frozen = encoder_frozen

    def train(self, mode: bool = True) -> SupervisedModel:
        """Frozen parts stay in eval mode (no dropout), so they act as fixed features."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        if self.diagnosis_head is not None:
            self.diagnosis_head.eval()
        return self

    def embed(self, batch: Batch) -> torch.Tensor:
        h = self.encoder(batch["ecg"])  # (B, d_model)
        if self.tab_encoder is None:
            return h
        h_tab = self.tab_encoder(batch["x_cont"], batch["x_mask"], batch["x_cat"])  # (B, T)
        return torch.cat([h, h_tab], dim=-1)  # (B, d_model + T)

    def forward(self, batch: Batch, head: str = "head") -> torch.Tensor:
        """Logits (B, K) of ``head`` ("head" or, for method_labs, "diagnosis_head")."""
        module = self.head if head == "head" else self.diagnosis_head
        if module is None:
            raise ValueError(f"{self.spec.name} has no {head!r}")
        return module(self.embed(batch))


def make_head(cfg: Mapping[str, Any]) -> nn.Module:
    """A head from its model.json config; ``norm`` puts an EmbeddingNorm in front."""
    head: nn.Module
    if cfg["kind"] == "linear":
        head = nn.Linear(cfg["in_dim"], cfg["out_dim"])
    else:
        head = MLPHead(cfg["in_dim"], list(cfg["hidden"]), cfg["out_dim"], cfg["dropout"])
    return normalised(head, cfg["in_dim"]) if cfg.get("norm", False) else head


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (upstream stage incomplete?)")
    return dict(json.loads(path.read_text()))


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
        meta = _read_json(Path(init_dir) / "model.json")
        encoder = build_ecg_encoder(meta["ecg_encoder"])
        encoder.load_state_dict(load_file(str(Path(init_dir) / "encoder.safetensors")))
        if cfg.freeze_blocks > len(encoder.blocks):
            raise ValueError(f"freeze_blocks={cfg.freeze_blocks} > {len(encoder.blocks)} blocks")
        encoder.freeze_blocks(cfg.freeze_blocks)
        head_cfg = _mlp_cfg(encoder.out_dim, cfg.head_hidden, n_out, dropout, cfg.head_norm)
        return SupervisedModel(spec, encoder, make_head(head_cfg), head_cfg)
    encoder = build_ecg_encoder(model_cfg["ecg_encoder"])
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


def param_groups(
    model: SupervisedModel, cfg: StageConfig, l2sp: bool = False
) -> list[dict[str, Any]]:
    """Head at ``lr``; trainable encoder parameters of an initialised encoder at encoder_lr.

    With ``l2sp`` the encoder has its own group without weight decay: L2-SP replaces the
    pull towards zero by one towards the stage-1 weights (Li et al. 2018).
    """
    head = [p for n, p in model.named_parameters() if p.requires_grad and not _is_encoder(n)]
    enc = [p for n, p in model.named_parameters() if p.requires_grad and _is_encoder(n)]
    if not l2sp and (model.spec.init is None or not cfg.encoder_lr):  # from scratch: one rate
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
        "runtime": runtime_record(),  # what else the bytes depend on (README: Determinism)
        "preprocessing": None if preprocessing is None else dict(preprocessing),
    }


def load_supervised(model_dir: Path) -> tuple[SupervisedModel, TabularPreprocessor | None]:
    """Rebuild a saved supervised model (strict weight loading) and its tabular statistics."""
    meta = _read_json(model_dir / "model.json")
    spec = ModelSpec(**meta["spec"])
    encoder = build_ecg_encoder(meta["ecg_encoder"])
    prep, tab_encoder = None, None
    if meta["tabular"] is not None:
        prep = TabularPreprocessor.from_dict(meta["tabular"])
        t = meta["tabular_encoder"]
        tab_encoder = build_tabular_encoder(t["config"], t["n_continuous"], t["cat_cardinalities"])
    head_cfg = meta["heads"]["head"]
    diag_cfg = meta["heads"].get("diagnosis_head")
    model = SupervisedModel(
        spec,
        encoder,
        make_head(head_cfg),
        head_cfg,
        tab_encoder=tab_encoder,
        diagnosis_head=None if diag_cfg is None else make_head(diag_cfg),
        diagnosis_head_cfg=diag_cfg,
        encoder_frozen=bool(meta["encoder_frozen"]),
    )
    model.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    return model, prep


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
