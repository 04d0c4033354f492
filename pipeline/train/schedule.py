"""Learning-rate schedules (per optimizer step) and the early-stopping rule.

Every stage warms up linearly, then anneals: ``cosine`` (warm-up from ~0 to the base rate,
cosine to 0 at the epoch cap) or ``onecycle`` (Smith & Topin 2019 as in
``torch.optim.lr_scheduler.OneCycleLR``: from base/25 up, cosine down to base/1e4);
``constant`` keeps the base rate (warm-up still applies). The schedule is a callable
object, so ``LambdaLR.state_dict()`` carries it into the resume checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.optim.lr_scheduler import LambdaLR

ScheduleName = Literal["cosine", "onecycle", "constant"]
SCHEDULES = ("cosine", "onecycle", "constant")

# (start factor of the warm-up, final factor at the last step) per schedule
_ENDS: dict[str, tuple[float, float]] = {
    "cosine": (0.0, 0.0),
    "onecycle": (1 / 25, 1e-4),
    "constant": (0.0, 1.0),
}


@dataclass
class WarmupAnneal:
    """Multiplier of the base rate at optimizer step ``step`` (0-based).

    Attributes:
        name: "cosine", "onecycle" or "constant".
        warmup_steps: steps of linear warm-up (0: none).
        total_steps: steps at the epoch cap; the anneal ends there.
    """

    name: str
    warmup_steps: int
    total_steps: int

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.name!r}")

    def __call__(self, step: int) -> float:
        start, final = _ENDS[self.name]
        if step < self.warmup_steps:
            # (step + 1): the first step already trains at a small, non-zero rate
            return start + (1.0 - start) * (step + 1) / self.warmup_steps
        if self.name == "constant":
            return 1.0
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min((step - self.warmup_steps) / span, 1.0)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    warmup_epochs: float,
    max_epochs: int,
    steps_per_epoch: int,
) -> LambdaLR:
    """A per-step LambdaLR over every parameter group (each keeps its own base rate)."""
    total = max(max_epochs * steps_per_epoch, 1)
    warmup = min(round(warmup_epochs * steps_per_epoch), total)
    fn = WarmupAnneal(name, warmup, total)
    return LambdaLR(optimizer, [fn] * len(optimizer.param_groups))


@dataclass(frozen=True)
class EarlyStopping:
    """Stop after ``patience`` epochs without a new best (0 = never stop early)."""

    patience: int = 0

    def should_stop(self, epoch: int, best_epoch: int) -> bool:
        """``epoch`` and ``best_epoch`` are 1-based (best_epoch 0: the starting weights)."""
        return self.patience > 0 and epoch - best_epoch >= self.patience
