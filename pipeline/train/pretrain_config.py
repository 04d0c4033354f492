"""The ``pretrain`` config section: training settings and the stage-1 objective.

The objective is chosen by name (``objective``); each objective's hyper-parameters live in a
block of their own (``barlow_twins``, ``vicreg``, ``clip``) whose keys are the loss module's
constructor arguments, so switching objectives never leaves a stray key that means nothing
to the new loss. Only the chosen block is recorded (MLflow, model.json, checkpoint key).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from pipeline.losses import (
    OBJECTIVE_NAMES,
    Objective,
    ObjectiveName,
    build_objective,
    objective_kwargs,
)
from pipeline.losses import objective_defaults as _defaults
from pipeline.train.stage import LoopSettings


@dataclass(frozen=True)
class PretrainConfig(LoopSettings):
    """The ``pretrain`` config section (defaults: the schema's, checked by a test).

    The training settings are :class:`pipeline.train.stage.LoopSettings`; here patience
    counts epochs without a lower validation loss.

    Attributes:
        embed_dim: projector output E.
        projector_hidden: projector hidden width.
        probe_max_train: training records embedded for the collapse check (bounds its cost).
        objective: the stage-1 loss, one of :data:`pipeline.losses.OBJECTIVE_NAMES`.
        barlow_twins, vicreg, clip: keyword arguments of each objective's loss module;
            keys left out take the module's defaults (filled in here, so what is recorded
            is complete).
    """

    patience: int = 4  # LoopSettings' field, pre-training's own default
    embed_dim: int = 128
    projector_hidden: int = 256
    probe_max_train: int = 1000
    objective: ObjectiveName = "barlow_twins"
    # Block defaults come from the loss modules' signatures: the one copy in Python.
    barlow_twins: dict[str, Any] = field(default_factory=partial(_defaults, "barlow_twins"))
    vicreg: dict[str, Any] = field(default_factory=partial(_defaults, "vicreg"))
    clip: dict[str, Any] = field(default_factory=partial(_defaults, "clip"))

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVE_NAMES:
            raise ValueError(
                f"pretrain.objective: unknown {self.objective!r}; "
                f"choose one of {list(OBJECTIVE_NAMES)}"
            )
        for name in OBJECTIVE_NAMES:
            given = dict(getattr(self, name))
            unknown = sorted(set(given) - set(objective_kwargs(name)))
            if unknown:
                raise ValueError(
                    f"pretrain.{name}: unknown key(s) {unknown}; "
                    f"accepted: {list(objective_kwargs(name))}"
                )
            object.__setattr__(self, name, {**_defaults(name), **given})

    def objective_kwargs(self) -> dict[str, Any]:
        """The chosen objective's keyword arguments (complete)."""
        return dict(getattr(self, self.objective))

    def build_objective(self) -> Objective:
        """The chosen stage-1 objective with its keyword arguments."""
        return build_objective(self.objective, **self.objective_kwargs())

    def record(self) -> dict[str, Any]:
        """What a run records: the settings and the chosen objective's kwargs only.

        The blocks of the other objectives are left out, so changing one of them neither
        shows up as a different run in MLflow nor invalidates a resume checkpoint.
        """
        settings = {k: v for k, v in asdict(self).items() if k not in OBJECTIVE_NAMES}
        return {**settings, "objective_kwargs": self.objective_kwargs()}
