"""The config sections of the supervised stages (``finetune_*``, ``baselines``).

One dataclass per section, so that each section's defaults are written once in Python and
checked against the schema's (``tests/test_config_defaults.py``): :class:`StageConfig`
holds the ``baselines`` defaults (trained from scratch, nothing frozen) and the behaviour;
the two fine-tuning sections subclass it with only the defaults that differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.supervised_settings import renamed_value
from pipeline.train.engine import LoopConfig
from pipeline.train.head_fit import HeadFit
from pipeline.train.stage import LoopSettings

HEAD_BATCH = 256  # cached (record, crop) embeddings per step of a head fit
HEAD_INITS = ("linear_fit", "random")


@dataclass(frozen=True)
class StageConfig(LoopSettings):
    """A supervised stage's section; the defaults are the ``baselines`` section's.

    The training settings (seed, epochs, patience, schedule, warmup_epochs, batch_size, lr,
    weight_decay) are :class:`pipeline.train.stage.LoopSettings`; patience counts epochs
    without a better validation macro AUROC.

    Attributes:
        freeze_blocks: first k encoder blocks frozen with the input projection (method).
        freeze_encoder: the whole encoder frozen (method_labs): the head then trains on
            cached embeddings.
        encoder_lr: learning rate of unfrozen encoder parameters of an initialised encoder;
            None = lr.
        head_hidden: hidden widths of the MLP head (method and signal-only).
        head_norm: standardise the head's input embedding (batch statistics, see
            :mod:`pipeline.models.heads`).
        head_init: "linear_fit" fits the new head on the starting encoder's frozen
            embeddings before end-to-end training (Kumar et al.'s linear probe, then
            fine-tune); "random" does not. The old value "probe" still works, with a warning.
        head_init_epochs, head_init_lr, head_init_patience: that fit (cached embeddings,
            batches of ``HEAD_BATCH`` crops).
        head_refit: after end-to-end training, continue training the head alone on the
            final encoder's cached embeddings with the same settings; kept only if its
            validation macro AUROC beats the trained head's.
    """

    freeze_blocks: int = 0
    freeze_encoder: bool = False
    encoder_lr: float | None = None
    head_hidden: tuple[int, ...] = (128,)
    head_norm: bool = True
    head_init: str = "linear_fit"
    head_init_epochs: int = 100
    head_init_lr: float = 1e-2
    head_init_patience: int = 10
    head_refit: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "head_hidden", tuple(int(h) for h in self.head_hidden))
        head_init = renamed_value("head_init", self.head_init, type(self).__name__)
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {list(HEAD_INITS)}, got {head_init!r}")
        object.__setattr__(self, "head_init", head_init)

    def head_fit(self, validate_start: bool = False) -> HeadFit:
        """The head warm start / refit on cached embeddings."""
        loop = LoopConfig(
            self.head_init_epochs, patience=self.head_init_patience, validate_start=validate_start
        )
        return HeadFit(loop, self.head_init_lr, self.weight_decay, HEAD_BATCH, self.seed)


@dataclass(frozen=True)
class BaselinesConfig(StageConfig):
    """The ``baselines`` section (signal-only, the multimodal models): trained from scratch at
    the rate validation chose from {3e-4, 1e-3, 3e-3, 1e-2, 3e-2} (issue 22)."""

    lr: float = 1e-2


@dataclass(frozen=True)
class FinetuneDiagnosesConfig(StageConfig):
    """The ``finetune_diagnoses`` section (stage 2): a gentle head rate, every block trained at
    the baselines' rate (chosen on validation, issue 22)."""

    lr: float = 3e-4
    freeze_blocks: int = 0
    encoder_lr: float | None = 1e-3


@dataclass(frozen=True)
class FinetuneLabsConfig(StageConfig):
    """The ``finetune_labs`` section (stage 3): frozen encoder, many cheap head epochs."""

    epochs: int = 100
    patience: int = 10
    freeze_encoder: bool = True
    encoder_lr: float | None = 3e-4


@dataclass(frozen=True)
class RegularisedConfig(FinetuneDiagnosesConfig):
    """The ``method_regularised`` section: stage 2 with an L2-SP pull to the stage-1 encoder.

    A section of its own (not a key of ``finetune_diagnoses``) so that the existing models'
    params, and hence their jobs and results, do not change.

    Attributes:
        l2sp_alpha: alpha of :class:`pipeline.losses.L2SP` on the encoder's trainable
            weights (0: plain stage 2). While it is > 0 the encoder gets no weight decay, so
            the only pull on it is towards w0 (the paper replaces L2 by L2-SP); the head
            keeps ``weight_decay`` (the paper's beta term).
    """

    # inherits finetune_diagnoses' recipe (issue 22): L2-SP is the only difference
    l2sp_alpha: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.l2sp_alpha < 0:
            raise ValueError(f"l2sp_alpha must be >= 0, got {self.l2sp_alpha}")


@dataclass(frozen=True)
class DistilledConfig(BaselinesConfig):
    """The ``distilled`` section: signal-only's settings (its rate too) plus the distillation's.

    Attributes:
        temperature: T of :class:`pipeline.losses.DistillationLoss` (softens the teacher's
            and the student's logits; the soft term is scaled by T^2).
        mix: weight of the soft (teacher) term; 1 - mix weighs the labels.
    """

    temperature: float = 2.0
    mix: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"distilled.temperature must be > 0, got {self.temperature}")
        if not 0 <= self.mix <= 1:
            raise ValueError(f"distilled.mix must be in [0, 1], got {self.mix}")


# config section -> its dataclass. A rule's section arrives complete (the schema fills every
# key), so StageConfig(**section) holds the same values as its own class would; they differ only in
# what a Python caller gets for the keys it leaves out.
STAGE_CONFIGS: dict[str, type[StageConfig]] = {
    "finetune_diagnoses": FinetuneDiagnosesConfig,
    "finetune_labs": FinetuneLabsConfig,
    "baselines": BaselinesConfig,
    "method_regularised": RegularisedConfig,
    "distilled": DistilledConfig,
}


def l2sp_alpha(cfg: StageConfig) -> float:
    """The stage's L2-SP strength: 0 for every section but ``method_regularised``."""
    return cfg.l2sp_alpha if isinstance(cfg, RegularisedConfig) else 0.0


def stage_config(name: str, values: dict[str, object]) -> StageConfig:
    """Section ``name``'s dataclass built from its (schema-complete) values."""
    return STAGE_CONFIGS[name](**values)  # type: ignore[arg-type]
