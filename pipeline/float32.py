"""Regions that stay float32 under mixed precision (``train.precision: bf16 | fp16``).

Autocast runs matrix products in bfloat16 or float16 (8 or 11 significant bits). That is
what makes the projections, GLU and heads fast, and is harmless there; it is not harmless
where a result is a small difference of large numbers or a sum over many terms: the S4
kernel (Cauchy / Vandermonde sums over the states at points near the poles), the FFT
convolution (sums over L lags; ``torch.fft`` has no bfloat16 kernels on CPU either) and
the losses' batch statistics (Barlow Twins' C_ii ~ 1 next to small C_ij, VICReg's
variances, CLIP's log-softmax over B logits, BCE). :func:`in_float32` marks such a
function: autocast is off inside it and its half-precision tensor arguments are upcast, so
it computes exactly what it computes in a float32 run. Outside autocast it changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar, cast

import torch

F = TypeVar("F", bound=Callable[..., Any])

_HALF = (torch.float16, torch.bfloat16)
_DEVICE_TYPES = ("cpu", "cuda")


def _upcast(value: Any) -> Any:
    """float16 / bfloat16 tensors -> float32; anything else (float64 included) unchanged."""
    if isinstance(value, torch.Tensor) and value.dtype in _HALF:
        return value.float()
    return value


def in_float32(fn: F) -> F:
    """Run ``fn`` with autocast off and its half-precision tensor arguments in float32."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        active = [d for d in _DEVICE_TYPES if torch.is_autocast_enabled(d)]
        if not active:  # a float32 run: the very same call, bit for bit
            return fn(*args, **kwargs)
        with ExitStack() as stack:
            for device_type in active:
                stack.enter_context(torch.autocast(device_type, enabled=False))
            return fn(*map(_upcast, args), **{k: _upcast(v) for k, v in kwargs.items()})

    return cast(F, wrapper)
