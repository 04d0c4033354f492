"""The encoders' builders by config name (config.yaml ``model.ecg_encoder.name`` /
``model.tabular_encoder.name``). The model registry is :mod:`pipeline.registry`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.models.encoders import ECGEncoder, TabularEncoder

ECG_ENCODERS: dict[str, Callable[..., ECGEncoder]] = {"s4": ECGEncoder}
TABULAR_ENCODERS: dict[str, Callable[..., TabularEncoder]] = {"mlp": TabularEncoder}


def _split(cfg: Mapping[str, Any], builders: Mapping[str, Any], section: str) -> tuple[Any, dict]:
    kwargs = dict(cfg)
    name = kwargs.pop("name", None)
    if name not in builders:
        raise ValueError(f"{section}: unknown name {name!r}; known: {', '.join(sorted(builders))}")
    return builders[name], kwargs


def build_ecg_encoder(cfg: Mapping[str, Any]) -> ECGEncoder:
    """Build the ECG encoder from ``model.ecg_encoder`` (or from ``ecg_encoder_config``).

    Raises:
        ValueError: unknown ``name`` or an unexpected key.
    """
    builder, kwargs = _split(cfg, ECG_ENCODERS, "model.ecg_encoder")
    try:
        return builder(**kwargs)
    except TypeError as err:
        raise ValueError(f"model.ecg_encoder: {err}") from err


def build_tabular_encoder(
    cfg: Mapping[str, Any], n_continuous: int, cat_cardinalities: Sequence[int]
) -> TabularEncoder:
    """Build the tabular encoder from ``model.tabular_encoder`` and the feature layout."""
    builder, kwargs = _split(cfg, TABULAR_ENCODERS, "model.tabular_encoder")
    if "hidden" in kwargs:
        kwargs["hidden"] = tuple(kwargs["hidden"])
    try:
        return builder(n_continuous, cat_cardinalities, **kwargs)
    except TypeError as err:
        raise ValueError(f"model.tabular_encoder: {err}") from err


def ecg_encoder_config(encoder: ECGEncoder) -> dict[str, Any]:
    """Exact architecture config (JSON-serialisable); ``build_ecg_encoder`` rebuilds it."""
    names = {builder: name for name, builder in ECG_ENCODERS.items()}
    return {"name": names[type(encoder)], **encoder.config}
