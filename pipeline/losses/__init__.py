"""Losses (one concept per module): the self-supervised ones and the stage-1 objective table,
L2-SP (:mod:`pipeline.losses.l2sp`), the fine-tuning regulariser of method_regularised,
knowledge distillation (:mod:`pipeline.losses.distillation`), the loss of ``distilled``, and
the masked multi-label BCE of every supervised stage (:mod:`pipeline.losses.masked_bce`).

Every self-supervised loss module maps two paired batches ``(z_a, z_b)``, each (B, D), to a
NamedTuple whose first field is the scalar ``loss`` and whose other fields are its terms.
The objective table (``_OBJECTIVES``) wraps one of them in an :class:`Objective` with a
single call signature for the training loop:

    objective = build_objective("vicreg", inv_weight=25.0)
    out = objective(z_ecg, z_tab)       # ObjectiveOutput
    out.loss.backward()
    log(out.components)                 # {"invariance": ..., "variance": ..., ...}

An objective can have parameters (CLIP's learnable temperature), so it belongs in the
optimiser and the checkpoint alongside the model.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import nn

from pipeline.losses.barlow_twins import BarlowTwinsLoss, BarlowTwinsOutput
from pipeline.losses.clip import ClipLoss, ClipOutput
from pipeline.losses.distillation import DistillationLoss, DistillationOutput
from pipeline.losses.l2sp import L2SP
from pipeline.losses.masked_bce import masked_bce
from pipeline.losses.vicreg import VICRegLoss, VICRegOutput
from pipeline.parallel import global_batch

ObjectiveName = Literal["barlow_twins", "vicreg", "clip"]

OBJECTIVE_NAMES: tuple[str, ...] = get_args(ObjectiveName)

# name -> (loss module, its output NamedTuple); the output's fields after ``loss`` are the
# components an Objective reports.
_OBJECTIVES: dict[str, tuple[type[nn.Module], type[tuple[Any, ...]]]] = {
    "barlow_twins": (BarlowTwinsLoss, BarlowTwinsOutput),
    "vicreg": (VICRegLoss, VICRegOutput),
    "clip": (ClipLoss, ClipOutput),
}


class ObjectiveOutput(NamedTuple):
    """Result of :class:`Objective`.

    Attributes:
        loss: Scalar loss to back-propagate.
        components: Detached scalar terms for logging, keyed as in
            :attr:`Objective.component_names`.
    """

    loss: torch.Tensor
    components: dict[str, torch.Tensor]


class Objective(nn.Module):
    """A stage-1 loss behind the uniform call ``(z_ecg, z_tab) -> ObjectiveOutput``.

    Args:
        name: The loss's name in the objective table.
        loss_fn: The loss module; its parameters (if any) become this module's.

    In training inside a data-parallel group both batches are first gathered across the
    ranks (:func:`pipeline.parallel.global_batch`), so the statistics (cross-correlation,
    variances, the similarity matrix) are those of the global batch.
    """

    def __init__(self, name: str, loss_fn: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.loss_fn = loss_fn
        fields: tuple[str, ...] = _OBJECTIVES[name][1]._fields  # type: ignore[attr-defined]
        self.component_names: tuple[str, ...] = fields[1:]

    def forward(self, z_ecg: torch.Tensor, z_tab: torch.Tensor) -> ObjectiveOutput:
        """Compute the loss between the ECG and tabular embeddings.

        Args:
            z_ecg: ECG-branch embeddings, shape (B, D).
            z_tab: Tabular-branch (or second-view) embeddings, shape (B, D).

        Returns:
            An :class:`ObjectiveOutput`.
        """
        if self.training:  # data-parallel: the statistics of the global batch (pipeline.parallel)
            z_ecg, z_tab = global_batch(z_ecg), global_batch(z_tab)
        out = self.loss_fn(z_ecg, z_tab)
        parts = {k: v.detach() for k, v in zip(out._fields[1:], out[1:], strict=True)}
        return ObjectiveOutput(loss=out.loss, components=parts)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def objective_kwargs(name: str) -> tuple[str, ...]:
    """The keyword arguments the objective ``name`` accepts (its constructor's)."""
    _check_name(name)
    params = inspect.signature(_OBJECTIVES[name][0].__init__).parameters
    return tuple(p for p in params if p != "self")


def objective_defaults(name: str) -> dict[str, Any]:
    """Every keyword argument of objective ``name`` with its default (the paper's values)."""
    _check_name(name)
    params = inspect.signature(_OBJECTIVES[name][0].__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self"}


def build_objective(name: ObjectiveName, **kwargs: Any) -> Objective:
    """Build the stage-1 objective ``name`` with its hyper-parameters.

    Args:
        name: One of :data:`OBJECTIVE_NAMES`.
        **kwargs: Constructor arguments of the loss; omitted ones take the paper defaults.

    Returns:
        An :class:`Objective`.

    Raises:
        ValueError: On an unknown name or argument (the message lists the valid ones), or
            an out-of-range value (from the loss module).
    """
    accepted = objective_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for objective {name!r}; accepted: {list(accepted)}"
        )
    return Objective(name, _OBJECTIVES[name][0](**kwargs))


def _check_name(name: str) -> None:
    if name not in _OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {list(OBJECTIVE_NAMES)}")


__all__ = [
    "L2SP",
    "OBJECTIVE_NAMES",
    "BarlowTwinsLoss",
    "BarlowTwinsOutput",
    "ClipLoss",
    "ClipOutput",
    "DistillationLoss",
    "DistillationOutput",
    "Objective",
    "ObjectiveName",
    "ObjectiveOutput",
    "VICRegLoss",
    "VICRegOutput",
    "build_objective",
    "masked_bce",
    "objective_defaults",
    "objective_kwargs",
]
