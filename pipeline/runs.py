"""Runs: the default run, each study seed, each sweep variant, each cell of a later grid.

A run is a name and the settings it overrides (dotted keys such as
``finetune_diagnoses.encoder_lr``; a seed is just another override). One set of Snakemake
rules serves every run through the ``{run}`` wildcard, the run's :attr:`Run.prefix` under
the results directory: the default run writes to results/ itself, study seed 1 to
results/study/seed1/, sweep variant ``kd_T1`` to results/sweep/kd_T1/.

A run re-trains exactly the training stages (the two stage-1 encoders and the registered
models) whose settings (:meth:`Stages.settings`) or data (:meth:`Stages.reads`) its
overrides change, and every stage downstream of one of them (initialised from it, or
distilled from it). Two overrides reach upstream of training (:data:`DATA_KEYS`):
``synthetic.world`` changes the cohort, so the run reads extraction, shards and splits from
its world's directory (:meth:`Plan.data`, e.g. results/regime/world-null/), shared by every
run of that world; ``label_fraction`` changes only the label subset (:meth:`Plan.labels`)
and the models trained on diagnoses. Everything else is the default run's file, and a stage
two runs train alike (same settings, data and upstream stages) is trained once, by the
first of them (:meth:`Plan.owner`). This module imports neither torch nor snakemake: the
Snakefile reads it while building the DAG.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pipeline.registry import PRETRAINED, ModelSpec
from pipeline.supervised_settings import SHARED, supervised_settings

DEFAULT = "default"  # the default run's name (and its row in the sweep table)
# Overrides outside the training stages' sections that a run may set: the synthetic world
# (a cohort of its own: extraction, shards, splits) and the fraction of training subjects
# whose diagnosis labels the supervised models see.
WORLD, LABEL_FRACTION = "synthetic.world", "label_fraction"
DATA_KEYS = (WORLD, LABEL_FRACTION)
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

    def reads(self, config: Mapping[str, Any], node: str) -> dict[str, Any]:
        """What stage ``node`` trains on beyond its settings: the cohort (the synthetic
        section, which the rules' params never carry) and, for a model trained on
        diagnoses, the label fraction (stage 1 keeps every training record)."""
        out: dict[str, Any] = {"synthetic": cohort_settings(config)}
        spec = self.models.get(node)
        if spec is not None and spec.task == "diagnoses":
            out[LABEL_FRACTION] = config[LABEL_FRACTION]
        return out

    def upstream(self, node: str) -> set[str]:
        """The stages ``node`` starts from or is distilled from."""
        spec = self.models.get(node)
        return set() if spec is None else {spec.init, spec.teacher} - {None}  # type: ignore[return-value]

    def retrained(self, config: Mapping[str, Any], run: Run) -> tuple[str, ...]:
        """The stages (order of :attr:`nodes`) run ``run`` re-trains: those whose settings
        or data its overrides change, and every stage downstream of one of them."""
        resolved = resolve(config, run)
        changed = {
            n
            for n in self.nodes
            if self.settings(resolved, n) != self.settings(config, n)
            or self.reads(resolved, n) != self.reads(config, n)
        }
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
        """The prefix of the run whose output of ``node`` run ``prefix`` reads: the default
        run's where it does not re-train the stage, else the first run (plan order) that
        trains it alike: same settings, same data, upstream stages from the same runs. So
        the regime's runs of one world and seed share stage 1 across label fractions, and a
        regime run equal to a study seed reads the study's models."""
        return self._owners[prefix][node]

    @cached_property
    def _owners(self) -> dict[str, dict[str, str]]:
        first: dict[tuple[str, str], str] = {}  # (node, identity) -> owning prefix
        out: dict[str, dict[str, str]] = {}
        for prefix in self.runs:
            owners = out[prefix] = {}
            for node in self.stages.nodes:  # upstream stages come first
                if node not in self.retrained[prefix]:
                    owners[node] = DEFAULT_RUN.prefix
                    continue
                key = (node, self._identity(prefix, node, owners))
                owners[node] = first.setdefault(key, prefix)
        return out

    def _identity(self, prefix: str, node: str, owners: Mapping[str, str]) -> str:
        resolved = self.resolved[prefix]
        upstream = {u: owners[u] for u in sorted(self.stages.upstream(node))}
        parts = (self.stages.settings(resolved, node), self.stages.reads(resolved, node), upstream)
        return repr(parts)

    def data(self, prefix: str) -> str:
        """Where run ``prefix`` reads its cohort, extraction, shards and splits: the default
        run's ('') unless it overrides the synthetic world, then its world's directory
        under its experiment, ``<experiment>/world-<world>/`` (one per world, shared)."""
        run, resolved = self.runs[prefix], self.resolved[prefix]
        if cohort_settings(resolved) == cohort_settings(self.config):
            return DEFAULT_RUN.prefix
        return f"{run.experiment}/world-{cohort_settings(resolved)['world']}/"

    def labels(self, prefix: str) -> str:
        """The label subset's tag in its file name (``train_labelled_ids{tag}.parquet``
        under the run's data): '' at the config's ``label_fraction`` (the default run's
        file), ``_<fraction>`` otherwise, shared by every run of that world and fraction."""
        fraction = self.resolved[prefix][LABEL_FRACTION]
        return "" if fraction == self.config[LABEL_FRACTION] else label_tag(fraction)

    @cached_property
    def datasets(self) -> dict[str, dict[str, Any]]:
        """Data prefix -> the synthetic section its cohort is made with, keys sorted (the
        default's first: synthesize_cohort's params)."""
        out = {DEFAULT_RUN.prefix: sorted_settings(self.config["synthetic"])}
        for prefix in self.runs:
            out.setdefault(self.data(prefix), sorted_settings(self.resolved[prefix]["synthetic"]))
        return out

    @cached_property
    def label_sets(self) -> dict[tuple[str, str], float]:
        """(data prefix, label tag) -> label fraction, for every subset some run reads (the
        value as written: label_subset's params)."""
        return {(self.data(p), self.labels(p)): self.resolved[p][LABEL_FRACTION] for p in self.runs}

    def settings(self, prefix: str, node: str) -> dict[str, Any]:
        """:meth:`Stages.settings` of ``node`` in run ``prefix``."""
        return self.stages.settings(self.resolved[prefix], node)


def cohort_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The synthetic section, keys sorted, world ``null`` spelt as a string (YAML reads an
    unquoted ``null`` as None; both mean the null world)."""
    section = sorted_settings(config["synthetic"])
    return section | {"world": "null" if section.get("world") is None else section["world"]}


def label_tag(fraction: float) -> str:
    """``_0.25``: a label subset's file-name tag (see :meth:`Plan.labels`)."""
    return f"_{float(fraction):g}"


def seed_overrides(config: Mapping[str, Any], stages: Stages, seed: int) -> dict[str, int]:
    """Every training stage's seed set to ``seed`` (the sections that have one)."""
    seeded = sorted(s for s in stages.sections() if "seed" in config.get(s, {}))
    return {f"{section}.seed": seed for section in seeded}


def study_runs(config: Mapping[str, Any], stages: Stages) -> list[Run]:
    """One run per ``study.seeds`` entry: every training stage's seed set to it.

    A seed equal to the default run's (every stage's) re-trains nothing: its models are the
    default run's own files.
    """
    return [
        Run(f"seed{seed}", seed_overrides(config, stages, seed), "study")
        for seed in config["study"]["seeds"]
    ]


def regime_runs(config: Mapping[str, Any], stages: Stages) -> list[Run]:
    """One run per cell of ``regime``: world x label fraction x seed, under results/regime/.

    Named ``<world>-f<fraction>-seed<seed>``. Runs of one world share its cohort; of one
    world and seed, stage 1; a cell equal to the default run or a study seed reads their
    models (:meth:`Plan.owner`).
    """
    grid = config["regime"]
    # real MIMIC has one world: there the world axis is the data as they are
    synthetic = config["source"]["synthetic"]
    worlds = grid["worlds"] if synthetic else [cohort_settings(config)["world"]]
    return [
        Run(
            f"{world or 'null'}-f{float(fraction):g}-seed{seed}",
            {**seed_overrides(config, stages, seed), WORLD: world, LABEL_FRACTION: fraction},
            "regime",
        )
        for world in worlds
        for fraction in grid["label_fractions"]
        for seed in grid["seeds"]
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
