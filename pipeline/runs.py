"""Runs: the default run, each study seed, each sweep variant, each cell of a later grid.

A run is a name and the settings it overrides (dotted keys such as
``finetune_diagnoses.encoder_lr``; a seed is just another override). One set of Snakemake
rules serves every run through the ``{run}`` wildcard, the run's :attr:`Run.prefix` under
the results directory: the default run writes to results/ itself, study seed 1 to
results/study/seed1/, sweep variant ``kd_T1`` to results/sweep/kd_T1/.

A run re-trains exactly the training stages (the two stage-1 encoders and the registered
models) whose settings (:meth:`Stages.settings`) its overrides change, and every stage
downstream of one of them (initialised from it, or distilled from it). Everything else
(extraction, shards, splits and every other stage) is the default run's file, shared and
never copied. This module imports neither torch nor snakemake: the Snakefile reads it while
building the DAG.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jsonschema

from pipeline.config_checks import config_errors
from pipeline.registry import PRETRAINED, ModelSpec
from pipeline.supervised_settings import SHARED, supervised_settings

DEFAULT = "default"  # the default run's name (and its row in the sweep table)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a path component and a wildcard value


@dataclass(frozen=True)
class Run:
    """One run of the workflow.

    Attributes:
        name: the run's directory and its row label (``seed1``, ``kd_T1``).
        overrides: dotted key (``<section>.<key>[.<key>...]``) -> value.
        experiment: the directory the run's outputs sit under (``study``, ``sweep``); empty
            for the default run, whose outputs are results/ itself.
    """

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    experiment: str = ""

    @property
    def prefix(self) -> str:
        """The ``{run}`` wildcard: the run's path under the results directory ('' or
        ``<experiment>/<name>/``)."""
        return f"{self.experiment}/{self.name}/" if self.experiment else ""

    @property
    def sections(self) -> set[str]:
        """The config sections the run overrides."""
        return {key.split(".", 1)[0] for key in self.overrides}

    def describe(self) -> str:
        """The overrides as one line, e.g. ``distilled.mix=0.25, distilled.temperature=1``."""
        return ", ".join(f"{k}={v}" for k, v in sorted(self.overrides.items()))


DEFAULT_RUN = Run(DEFAULT)


def resolve(config: Mapping[str, Any], run: Run) -> dict[str, Any]:
    """A deep copy of ``config`` with the run's overrides written in."""
    out = copy.deepcopy(dict(config))
    for key, value in run.overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: {part!r} is not a config section")
        node[leaf] = copy.deepcopy(value)
    return out


def sorted_settings(value: Any) -> Any:
    """``value`` with mapping keys sorted at every level.

    Snakemake re-runs a job when its params differ from the last run's, and compares them
    in written order: without sorting, merely reordering keys in a config file (or a YAML
    dump that sorts them) would re-run every stage.
    """
    if isinstance(value, Mapping):
        return {key: sorted_settings(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_settings(item) for item in value]
    return value


@dataclass(frozen=True)
class Stages:
    """The training stages of the DAG and the settings each reads.

    Attributes:
        models: the model registry (pipeline.registry.models()).
        objectives: the stage-1 objective names, each the key of its argument block in the
            ``pretrain`` section (the schema's ``pretrain.objective`` enum).
    """

    models: Mapping[str, ModelSpec]
    objectives: Sequence[str]

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every training stage: the stage-1 encoders, then the models (registry order)."""
        return (*PRETRAINED, *self.models)

    def sections(self) -> set[str]:
        """The config sections of the training stages (the keys a run may override),
        the shared ``supervised`` section among them."""
        models = {s.section for s in self.models.values()}
        return {"pretrain", "pretrain_ecg_only", SHARED} | models

    def settings(self, config: Mapping[str, Any], node: str) -> dict[str, Any]:
        """The settings training stage ``node`` reads: its rule's params, keys sorted.

        The one place that says which config keys reach which stage: the rules' params and
        a run's reach (:meth:`retrained`) both come from it. A stage-1 encoder reads the
        ``pretrain`` section less the argument blocks of the objectives it does not use (so
        that editing pretrain.vicreg does not re-run a Barlow Twins pre-training).
        """
        shared = {"model": config["model"], "train": config["train"]}
        if node not in PRETRAINED:
            stage = supervised_settings(config, self.models[node].section)
            return sorted_settings({"stage": stage, **shared})
        pretrain = config["pretrain"]
        unused = set(self.objectives) - {pretrain["objective"]}
        out = {"pretrain": {k: v for k, v in pretrain.items() if k not in unused}, **shared}
        if node == "pretrain_ecg_only":  # the second crop's augmentation
            out["augment"] = config["pretrain_ecg_only"]["augment"]
        return sorted_settings(out)

    def upstream(self, node: str) -> set[str]:
        """The stages ``node`` starts from or is distilled from."""
        spec = self.models.get(node)
        return set() if spec is None else {spec.init, spec.teacher} - {None}  # type: ignore[return-value]

    def retrained(self, config: Mapping[str, Any], run: Run) -> tuple[str, ...]:
        """The stages (order of :attr:`nodes`) run ``run`` re-trains: those whose settings
        its overrides change, and every stage downstream of one of them."""
        resolved = resolve(config, run)
        changed = {n for n in self.nodes if self.settings(resolved, n) != self.settings(config, n)}
        grew = True
        while grew:  # a stage downstream of a re-trained one is re-trained too
            downstream = {n for n in self.nodes if self.upstream(n) & changed}
            grew = not downstream <= changed
            changed |= downstream
        return tuple(n for n in self.nodes if n in changed)


@dataclass(frozen=True)
class Plan:
    """Every run of a workflow and what each re-trains.

    Attributes:
        config: the default run's config.
        stages: the training stages.
        runs: the runs (the default run first), by :attr:`Run.prefix`.
    """

    config: Mapping[str, Any]
    stages: Stages
    runs: Mapping[str, Run]

    @classmethod
    def of(cls, config: Mapping[str, Any], stages: Stages, runs: Iterable[Run]) -> Plan:
        """The plan of ``runs`` (the default run is added first)."""
        table = {DEFAULT_RUN.prefix: DEFAULT_RUN} | {run.prefix: run for run in runs}
        return cls(config, stages, table)

    @cached_property
    def retrained(self) -> dict[str, tuple[str, ...]]:
        """Run prefix -> the stages that run re-trains."""
        return {p: self.stages.retrained(self.config, run) for p, run in self.runs.items()}

    @cached_property
    def resolved(self) -> dict[str, dict[str, Any]]:
        """Run prefix -> the run's config."""
        return {p: resolve(self.config, run) for p, run in self.runs.items()}

    def owner(self, prefix: str, node: str) -> str:
        """The prefix of the run whose output of ``node`` run ``prefix`` reads: its own
        where it re-trains the stage, else the default run's."""
        return prefix if node in self.retrained[prefix] else DEFAULT_RUN.prefix

    def settings(self, prefix: str, node: str) -> dict[str, Any]:
        """:meth:`Stages.settings` of ``node`` in run ``prefix``."""
        return self.stages.settings(self.resolved[prefix], node)


def study_runs(config: Mapping[str, Any], stages: Stages) -> list[Run]:
    """One run per ``study.seeds`` entry: every training stage's seed set to it.

    A seed equal to the default run's (every stage's) re-trains nothing: its models are the
    default run's own files.
    """
    seeded = sorted(s for s in stages.sections() if "seed" in config.get(s, {}))
    return [
        Run(f"seed{seed}", {f"{section}.seed": seed for section in seeded}, "study")
        for seed in config["study"]["seeds"]
    ]


def parse_variants(raw: Sequence[Mapping[str, Any]]) -> list[Run]:
    """The ``sweep.variants`` list (schema-validated) as runs under results/sweep/.

    Variants are a list, not a mapping, on purpose: Snakemake deep-merges mappings from
    ``--configfile`` overrides into config.yaml's, so a user could never drop a default
    variant; a list is replaced whole.
    """
    return [Run(str(item["name"]), dict(item["set"]), "sweep") for item in raw]


def sweep_runs(config: Mapping[str, Any], stages: Stages) -> tuple[list[Run], list[str]]:
    """The variants to train, and a warning for each one left out.

    A variant that re-trains nothing (its settings equal the config's, as after a user
    adopts one as the default, or reach no stage) is no error: it must not stop the main
    workflow; the sweep leaves it out, since its row would repeat the default's.
    """
    kept, warnings = [], []
    for run in parse_variants(config["sweep"]["variants"]):
        if stages.retrained(config, run):
            kept.append(run)
            continue
        why = "equals the config" if repeats_default(config, run) else "reaches no stage"
        warnings.append(
            f"sweep: variant {run.name} ({run.describe()}) {why}; the default run stands for"
            " it, so the sweep leaves it out"
        )
    return kept, warnings


def repeats_default(config: Mapping[str, Any], run: Run) -> bool:
    """Whether every override of ``run`` already equals the config's."""
    return resolve(config, run) == dict(config)


def study_rows(runs: Sequence[Run], models: Iterable[str]) -> list[tuple[Run, str]]:
    """(run, model) for every study seed and model, seed-major as study_table1 expects."""
    names = list(models)
    return [(run, model) for run in runs for model in names]


def sweep_rows(plan: Plan, runs: Sequence[Run]) -> list[tuple[Run, str]]:
    """(run, model) rows of the sweep table: for every model some variant re-trains, the
    default run's first, then each variant's, in config order."""
    models = plan.stages.models
    retrained = {run.name: [n for n in plan.retrained[run.prefix] if n in models] for run in runs}
    swept = {m for names in retrained.values() for m in names}
    rows = [(DEFAULT_RUN, m) for m in models if m in swept]
    return rows + [(run, m) for run in runs for m in retrained[run.name]]


def variant_errors(
    config: Mapping[str, Any], schema: Mapping[str, Any], stages: Stages
) -> list[str]:
    """Every problem of ``sweep.variants``, each naming the variant and the key."""
    errors: list[str] = []
    allowed = stages.sections()
    validator = jsonschema.validators.validator_for(schema)(schema)
    seen: set[str] = set()
    for i, run in enumerate(parse_variants(config["sweep"]["variants"])):
        where = f"sweep.variants[{i}] ({run.name})"
        if not NAME.match(run.name) or run.name == DEFAULT:
            errors.append(f"{where}: name must match {NAME.pattern} and not be {DEFAULT!r}")
        if run.name in seen:
            errors.append(f"{where}: the name is used twice")
        seen.add(run.name)
        bad = sorted(run.sections - allowed)
        if bad:
            errors.append(
                f"{where}: {bad[0]} is not a training stage's section; a variant sets keys of "
                f"{', '.join(sorted(allowed))}"
            )
            continue
        errors += _resolved_errors(where, config, run, validator)
    return errors


def _resolved_errors(where: str, config: Mapping[str, Any], run: Run, validator: Any) -> list[str]:
    try:
        resolved = resolve(config, run)
    except ValueError as err:
        return [f"{where}: {err}"]
    found = [
        f"{where}: {'.'.join(map(str, e.absolute_path)) or '(config)'}: {e.message}"
        for e in validator.iter_errors(resolved)
    ]
    if found:
        return found
    return [f"{where}: {e}" for e in config_errors(resolved)]
