"""Model layer: S4 kernels and layer, ECG/tabular encoders, heads and the config registry."""

from pipeline.models.encoders import ECGEncoder, MLPHead, Projector, S4Block, TabularEncoder
from pipeline.models.registry import build_ecg_encoder, build_tabular_encoder, ecg_encoder_config
from pipeline.models.s4 import S4Layer

__all__ = [
    "ECGEncoder",
    "MLPHead",
    "Projector",
    "S4Block",
    "S4Layer",
    "TabularEncoder",
    "build_ecg_encoder",
    "build_tabular_encoder",
    "ecg_encoder_config",
]
