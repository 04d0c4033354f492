"""The supervised models, in one table that the workflow, training, Table 1 and the report read.

Each :class:`ModelSpec` says everything that distinguishes a model: the task it is trained
on, where its ECG encoder comes from, which tabular features it sees, its head, objective
and freezing, the config section its training settings come from, and its Table 1 row.
``workflow/rules/train.smk`` derives one ``train_model`` job per entry from it, the
``evaluate`` and ``report`` rules expand over it, and Table 1 builds its rows from it, so a
model is added by adding one entry.

Extension point: modules named in the environment variable ``ECG_EXPLAIN_MODEL_PLUGINS``
(comma-separated import paths) are imported and their ``MODELS`` (a sequence of ModelSpec)
appended after the built-in ones. The workflow sets this variable from the config key
``model_registry.plugins``, so every job (local or SLURM) sees the same table. This module
imports neither torch nor snakemake: the Snakefile reads it while building the DAG.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

PLUGINS_ENV = "ECG_EXPLAIN_MODEL_PLUGINS"

Task = Literal["diagnoses", "labs"]
Section = Literal[
    "finetune_diagnoses", "finetune_labs", "baselines", "method_regularised", "distilled"
]
# Stage-1 encoders a model can start from (``init``): the pre-training rule that writes each.
PRETRAINED: Mapping[str, str] = {
    "pretrain": "stage 1: the ECG against the tabular data (the paper's)",
    "pretrain_ecg_only": "stage 1: the ECG against a second augmented crop of itself",
}
# Macro AUROC (95% CI where published) on real MIMIC data, PROTOCOL.md.
Reference = tuple[float, float | None, float | None]


@dataclass(frozen=True)
class Table1Row:
    """One approach (row) of Table 1; the models naming it fill its diagnoses/labs cells.

    Attributes:
        title: the approach column.
        inference: what the approach needs at inference.
        training: what it needs in training.
        order: rows are sorted by it (the paper's order for the built-in rows; rows at
            ``BEYOND_THE_PAPER`` and above are models the paper does not have).
    """

    title: str
    inference: str
    training: str
    order: int


@dataclass(frozen=True)
class ModelSpec:
    """One supervised model.

    Attributes:
        name: model name (the ``{model}`` wildcard, results/models/<name>).
        task: "diagnoses" (ICD-10 labels) or "labs" (lab-abnormality targets).
        init: where the ECG encoder starts: None (from scratch), a stage-1 encoder
            (a key of :data:`PRETRAINED`) or the name of another registered model (its
            encoder and head).
        tabular: feature group fed to a tabular encoder ("all", "routine") or None.
        head: "mlp" (MLPHead) or "linear" (late fusion with one linear layer, MDS-ED).
        section: config section with the model's training settings.
        objective: the training loss, in words (the report's Models table); the loss itself
            is the section's (:mod:`pipeline.train.supervised_loss`).
        freezing: what stays frozen, in words (the report's Models table); set by the
            section's ``freeze_*`` keys.
        row: its Table 1 row.
        reference: the paper's value for this model's cell of Table 1, or None.
        teacher: a model whose soft predictions on the training records the model is
            distilled from (its section's ``temperature`` and ``mix``), or None.
        compare: models this one is compared with on the same bootstrap resamples (the
            report's and the study's paired differences, this model minus each).
        probe: whether the probe stage probes this model's ECG encoder.
        label: a short name for tables and plots (the probe's columns).
        doc: what the model is, in a sentence (the entry's docstring).
    """

    name: str
    task: Task
    init: str | None
    tabular: Literal["all", "routine"] | None
    head: Literal["mlp", "linear"]
    section: Section = "baselines"
    objective: str = "masked multi-label BCE"
    freezing: str = "none"
    row: Table1Row | None = None
    reference: Reference | None = None
    teacher: str | None = None
    compare: tuple[str, ...] = ()
    probe: bool = False
    label: str = ""
    doc: str = ""


# Rows from this order on follow the paper's four: models beyond the paper (issue 9).
BEYOND_THE_PAPER = 100

_SIGNAL_ONLY = Table1Row("Supervised signal-only (S4)", "ECG", "ECG, diagnoses", 0)
_MM_LABS = Table1Row(
    "Multimodal lab prediction (ECG + routine)",
    "ECG + routine clinical data",
    "ECG, routine clinical data, lab values",
    1,
)
_MM_CLASSIFICATION = Table1Row(
    "Multimodal classification (ECG + routine + labs)",
    "ECG + routine clinical data + lab values",
    "ECG, routine clinical data, lab values, diagnoses",
    2,
)
_METHOD = Table1Row(
    "Three-stage method (ECG only at inference)",
    "ECG",
    "ECG, routine clinical data, lab values (pre-training), diagnoses, lab values",
    3,
)
_REGULARISED = Table1Row(
    "Beyond the paper: three-stage method, stage 2 with L2-SP to the stage-1 encoder",
    "ECG",
    "ECG, routine clinical data, lab values (pre-training), diagnoses",
    BEYOND_THE_PAPER,
)
_DISTILLED = Table1Row(
    "Beyond the paper: ECG-only student distilled from the multimodal classifier",
    "ECG",
    "ECG, routine clinical data, lab values (teacher), diagnoses",
    BEYOND_THE_PAPER + 1,
)
_SSL = Table1Row(
    "Beyond the paper: stage 1 on two augmented ECG crops (no clinical data), then stage 2",
    "ECG",
    "ECG (pre-training), diagnoses",
    BEYOND_THE_PAPER + 2,
)
_RANDOM_INIT = Table1Row(
    "Control: the method's stage 2 on a randomly initialised encoder (no stage 1)",
    "ECG",
    "ECG, diagnoses",
    BEYOND_THE_PAPER + 3,
)

BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        "method_diagnoses",
        "diagnoses",
        "pretrain",
        None,
        "mlp",
        section="finetune_diagnoses",
        freezing="first finetune_diagnoses.freeze_blocks encoder blocks",
        row=_METHOD,
        reference=(0.795, None, None),
        compare=("signal_only", "multimodal_classification", "ssl_ecg_only"),
        probe=True,
        label="method (stage 2)",
        doc="Stage 2: the stage-1 encoder, first k blocks frozen, a new MLP head over diagnoses.",
    ),
    ModelSpec(
        "method_labs",
        "labs",
        "method_diagnoses",
        None,
        "mlp",
        section="finetune_labs",
        freezing="encoder (finetune_labs.freeze_encoder) and the diagnosis head",
        row=_METHOD,
        reference=(0.701, None, None),
        compare=("multimodal_labs",),
        label="method (stage 3)",
        doc=(
            "Stage 3: a lab head on the stage-2 encoder; the model file keeps the diagnosis"
            " head, so both come from one embedding."
        ),
    ),
    ModelSpec(
        "signal_only",
        "diagnoses",
        None,
        None,
        "mlp",
        row=_SIGNAL_ONLY,
        reference=(0.768, 0.764, 0.772),
        probe=True,
        label="signal-only",
        doc="Baseline: S4 from scratch on the ECG alone, diagnoses.",
    ),
    ModelSpec(
        "multimodal_classification",
        "diagnoses",
        None,
        "all",
        "linear",
        row=_MM_CLASSIFICATION,
        reference=(0.826, 0.822, 0.829),
        label="multimodal classification",
        doc="Baseline: ECG + all tabular features, late fusion with one linear layer, diagnoses.",
    ),
    ModelSpec(
        "multimodal_labs",
        "labs",
        None,
        "routine",
        "linear",
        row=_MM_LABS,
        reference=(0.762, None, None),
        label="multimodal labs",
        doc="Baseline: ECG + routine tabular features (no labs), late fusion, lab targets.",
    ),
    ModelSpec(
        "method_regularised",
        "diagnoses",
        "pretrain",
        None,
        "mlp",
        section="method_regularised",
        objective="masked multi-label BCE + L2-SP (method_regularised.l2sp_alpha)",
        freezing="first method_regularised.freeze_blocks encoder blocks",
        row=_REGULARISED,
        compare=("method_diagnoses", "signal_only"),
        probe=True,
        label="stage 2 + L2-SP",
        doc=(
            "Beyond the paper: stage 2 whose loss adds an L2-SP pull of the encoder towards its"
            " stage-1 weights (Li et al. 2018), so fine-tuning keeps the clinical alignment."
        ),
    ),
    ModelSpec(
        "distilled",
        "diagnoses",
        None,
        None,
        "mlp",
        section="distilled",
        objective="(1 - mix) BCE(labels) + mix T^2 BCE(teacher at temperature T) (Hinton 2015)",
        row=_DISTILLED,
        teacher="multimodal_classification",
        compare=("signal_only", "method_diagnoses"),
        probe=True,
        label="distilled",
        doc=(
            "Beyond the paper: signal-only's S4 and head, trained on the labels and on the"
            " multimodal classifier's softened predictions: clinical knowledge carried into an"
            " ECG-only model by distillation, the method's strongest rival."
        ),
    ),
    ModelSpec(
        "ssl_ecg_only",
        "diagnoses",
        "pretrain_ecg_only",
        None,
        "mlp",
        section="finetune_diagnoses",
        freezing="first finetune_diagnoses.freeze_blocks encoder blocks",
        row=_SSL,
        compare=("signal_only",),
        probe=True,
        label="ECG-only SSL + stage 2",
        doc=(
            "Beyond the paper: stage 2 exactly as the method's, on a stage-1 encoder trained"
            " with the same objective between two augmented crops of the ECG (no clinical"
            " data): separates clinical knowledge from any self-supervision."
        ),
    ),
    ModelSpec(
        "random_init_finetune",
        "diagnoses",
        None,
        None,
        "mlp",
        section="finetune_diagnoses",
        freezing="first finetune_diagnoses.freeze_blocks encoder blocks (random weights)",
        row=_RANDOM_INIT,
        compare=("signal_only", "method_diagnoses"),
        label="random init + stage 2",
        doc=(
            "Control (issue 22): stage 2 exactly as the method's (finetune_diagnoses: frozen"
            " blocks, encoder and head rates, head warm start) on an untrained encoder, so the"
            " recipe's own cost (this - signal_only) and stage 1's gain under it (method -"
            " this) are measured rather than inferred."
        ),
    ),
)


def architecture(spec: ModelSpec) -> dict[str, str | None]:
    """The fields that rebuild the modules (model.json's ``spec``; the rest is workflow)."""
    return {k: getattr(spec, k) for k in ("name", "task", "init", "tabular", "head")}


def plugin_modules() -> tuple[str, ...]:
    """The plugin module names in ``ECG_EXPLAIN_MODEL_PLUGINS``, in order."""
    raw = os.environ.get(PLUGINS_ENV, "")
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def models() -> Mapping[str, ModelSpec]:
    """Model name -> spec: the built-in models, then those of the plugin modules."""
    return _load(plugin_modules())


@lru_cache(maxsize=8)
def _load(modules: tuple[str, ...]) -> Mapping[str, ModelSpec]:
    specs: list[ModelSpec] = list(BUILTIN)
    for module in modules:
        extra: Sequence[ModelSpec] = importlib.import_module(module).MODELS
        specs.extend(extra)
    table: dict[str, ModelSpec] = {}
    for spec in specs:
        if spec.name in table:
            raise ValueError(f"model {spec.name!r} registered twice ({PLUGINS_ENV}?)")
        table[spec.name] = spec
    for spec in specs:
        _check(spec, table)
    return table


def _check(spec: ModelSpec, table: Mapping[str, ModelSpec]) -> None:
    """Reject entries the workflow could not wire (unknown init or teacher, odd names)."""
    if not spec.name.isidentifier() or spec.name in PRETRAINED:
        raise ValueError(
            f"model name {spec.name!r}: must be an identifier, not one of {list(PRETRAINED)}"
        )
    if spec.init not in (None, *PRETRAINED, *table) or spec.init == spec.name:
        raise ValueError(
            f"model {spec.name!r}: init {spec.init!r} is neither a registered model nor one"
            f" of the stage-1 encoders {list(PRETRAINED)}"
        )
    for field, refs in (("teacher", (spec.teacher,)), ("compare", spec.compare)):
        for ref in refs:
            if ref is not None and (ref not in table or ref == spec.name):
                raise ValueError(f"model {spec.name!r}: {field} {ref!r} is not a registered model")
    if spec.teacher is not None and table[spec.teacher].task != spec.task:
        raise ValueError(f"model {spec.name!r}: teacher {spec.teacher!r} has another task")


def comparisons() -> tuple[tuple[str, str], ...]:
    """(model, reference) pairs of every entry's ``compare``, in registry order."""
    return tuple((m.name, ref) for m in models().values() for ref in m.compare)


def model_names() -> tuple[str, ...]:
    """The registered model names, built-in first."""
    return tuple(models())


def spec(name: str) -> ModelSpec:
    """The spec of model ``name``.

    Raises:
        ValueError: If no such model is registered.
    """
    table = models()
    if name not in table:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(table)}")
    return table[name]
