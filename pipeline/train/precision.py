"""``train.precision``: the float format of the forward pass, resolved once per stage.

``fp32`` runs everything in float32 (bit-identical to runs before the setting existed).
``bf16`` and ``fp16`` run the forward pass under ``torch.autocast``: matrix products (the
projections, GLU, MLPs and heads, most of a step's time) in bfloat16 or float16, with
the S4 kernel, the FFT convolution and the losses' statistics kept in float32
(:mod:`pipeline.float32`). Weights, gradients and optimizer state stay float32.
float16 has 5 exponent bits: small gradients underflow, so fp16 scales the loss
(``torch.amp.GradScaler``, whose state is part of the resume checkpoint); bfloat16 has
float32's range and needs no scaling. ``auto`` is float32 on CPU (bfloat16 matmuls are
faster only on CPUs with AMX / AVX512-BF16, and not measured here) and, on CUDA, bf16
where the device supports it (Ampere and later), else fp16.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch.amp import GradScaler

from pipeline.stops import BadSetting

Resolved = Literal["fp32", "bf16", "fp16"]
SETTINGS: tuple[str, ...] = ("auto", *get_args(Resolved))
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved ``train.precision`` on a device type (``cpu`` or ``cuda``)."""

    name: Resolved = "fp32"
    device_type: str = "cpu"

    def autocast(self) -> AbstractContextManager[Any]:
        """Wrap a forward pass (and its loss) in this; fp32: a context that does nothing."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.name])

    def new_scaler(self) -> GradScaler | None:
        """A fresh loss scaler for fp16, None otherwise (one per training loop)."""
        return GradScaler(self.device_type) if self.name == "fp16" else None


FP32 = Precision()


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """``train.precision`` (auto, fp32, bf16, fp16) on ``device``.

    Raises:
        BadSetting: an unknown value, or bf16 on a CUDA device without bfloat16 support.
    """
    if setting not in SETTINGS:
        raise BadSetting(f"train.precision must be one of {', '.join(SETTINGS)}; got {setting!r}")
    cuda = device.type == "cuda"
    bf16_ok = not cuda or torch.cuda.is_bf16_supported()
    if setting == "auto":
        return Precision("bf16" if bf16_ok else "fp16", "cuda") if cuda else Precision()
    if setting == "bf16" and not bf16_ok:
        name = torch.cuda.get_device_name(device)
        raise BadSetting(f"train.precision: bf16, but {name} has no bfloat16; use fp16 or auto")
    return Precision(setting, device.type)  # type: ignore[arg-type]  # checked above


def backward_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: GradScaler | None
) -> None:
    """Backward and optimizer step; with a scaler the loss is scaled, the step skipped when
    a gradient overflowed, and the scale adapted (fp16)."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
