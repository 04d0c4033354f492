"""The data-parallel group a training process belongs to, and the gather across it.

A low-level module (it imports only torch) so that the losses and the models' batch norm
can ask whether they run in a group without importing the training package, which imports
them. The group is set up and torn down by :mod:`pipeline.train.distributed`; outside it,
and on rank 0 once training is over (:func:`leave_group`), :func:`current` is None and
everything here is the identity.

Gradients through the gather: every rank computes the same statistic of the gathered
(global) batch, so the gradient of its own rows is the sum over ranks of each rank's
gradient of them (an all-reduce); DistributedDataParallel then averages the parameter
gradients over the N ranks, which gives exactly the gradient one process computes on the
whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: ``rank`` of ``world`` processes, on ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


_current: Ranks | None = None


def current() -> Ranks | None:
    """The group this process trains in, or None (one process, or training is over)."""
    return _current


def is_main() -> bool:
    """Whether this process writes outputs: rank 0, or the only process."""
    return _current is None or _current.main


def join_group(ranks: Ranks) -> None:
    global _current
    _current = ranks


def leave_group() -> None:
    """From now on this process works alone (rank 0 after training: outputs, probes)."""
    global _current
    _current = None


class _GatherRows(torch.autograd.Function):
    """(b, ...) on each rank -> (world * b, ...), rank r's rows at [r * b, (r + 1) * b)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
        ctx.rank, ctx.world = rank, world
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's gradient of the rows: summed (see module doc)
        b = grad.shape[0] // ctx.world
        return grad[ctx.rank * b : (ctx.rank + 1) * b], None, None


def global_batch(x: torch.Tensor) -> torch.Tensor:
    """The global batch of ``x`` (B/N, ...) -> (B, ...) in rank order, differentiable; ``x``
    itself outside a group. Every rank must hold the same number of rows."""
    ranks = _current
    if ranks is None or ranks.world == 1:
        return x
    out: torch.Tensor = _GatherRows.apply(x, ranks.rank, ranks.world)
    return out


def local_rows(x: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch (the inverse of :func:`global_batch`)."""
    ranks = _current
    if ranks is None or ranks.world == 1:
        return x
    b = x.shape[0] // ranks.world
    return x[ranks.rank * b : (ranks.rank + 1) * b]
