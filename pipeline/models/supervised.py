"""The supervised network: ECG encoder (+ tabular encoder), heads, and reloading it.

What inference needs of a trained model lives here, outside :mod:`pipeline.train`:
:class:`SupervisedModel` and :func:`load_supervised`, which rebuilds one exactly from its
model directory (``model.safetensors`` with every weight: ``encoder.*``, ``tab_encoder.*``,
``head.*`` and, for method_labs, ``diagnosis_head.*``; ``model.json`` with the
architecture configs, labels per head and tabular statistics). Building a model for
training and writing model.json is :mod:`pipeline.train.model`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from pipeline.data.tabular import TabularPreprocessor
from pipeline.models.builders import build_ecg_encoder, build_tabular_encoder
from pipeline.models.encoders import ECGEncoder, MLPHead, TabularEncoder
from pipeline.models.heads import normalised
from pipeline.registry import ModelSpec

Batch = dict[str, torch.Tensor]  # a collated batch: "ecg" (B, 12, L), tabular, targets


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


def read_model_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (upstream stage incomplete?)")
    return dict(json.loads(path.read_text()))


def load_supervised(model_dir: Path) -> tuple[SupervisedModel, TabularPreprocessor | None]:
    """Rebuild a saved supervised model (strict weight loading) and its tabular statistics."""
    meta = read_model_json(model_dir / "model.json")
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
