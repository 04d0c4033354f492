"""Model layer: S4 kernels and layer, ECG/tabular encoders, heads, the encoders' builders by
config name (:mod:`pipeline.models.builders`) and the supervised network
(:mod:`pipeline.models.supervised`)."""

from pipeline.models.builders import build_ecg_encoder, build_tabular_encoder, ecg_encoder_config
from pipeline.models.encoders import ECGEncoder, MLPHead, Projector, S4Block, TabularEncoder
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
