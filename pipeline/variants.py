"""Sweep variants: named config edits of the training stages, and what each re-trains.

A variant is a name and a few dotted settings, e.g. ``{name: l2sp_0.01, set:
{method_regularised.l2sp_alpha: 0.01}}``. ``snakemake sweep`` trains, for every variant,
exactly the stages its settings reach and nothing else: the model(s) whose config section it
edits, and every model downstream of them (initialised from one, or distilled from one).
A variant of ``pretrain`` re-trains both stage-1 encoders (pretrain_ecg_only takes its
settings from pretrain) and every model that starts from them. Everything else (extraction,
shards, splits, untouched models) is the default run's.

Variants are a list, not a mapping, on purpose: Snakemake deep-merges mappings from
``--configfile`` overrides into config.yaml's, so a user could never drop a default variant;
a list is replaced whole. This module imports neither torch nor snakemake (the Snakefile
reads it while building the DAG).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from pipeline.config_checks import config_errors
from pipeline.registry import PRETRAINED, ModelSpec

DEFAULT = "default"  # the default run's row in the sweep table; not a variant name
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a path component and a wildcard value


@dataclass(frozen=True)
class Variant:
    """One sweep variant.

    Attributes:
        name: directory under results/sweep/ and the variant's row label.
        settings: dotted key (``<section>.<key>[.<key>...]``) -> value.
    """

    name: str
    settings: Mapping[str, Any]

    @property
    def sections(self) -> set[str]:
        """The config sections the variant edits."""
        return {key.split(".", 1)[0] for key in self.settings}

    def describe(self) -> str:
        """The settings as one line, e.g. ``distilled.mix=0.25, distilled.temperature=1``."""
        return ", ".join(f"{k}={v}" for k, v in sorted(self.settings.items()))


def parse_variants(raw: Sequence[Mapping[str, Any]]) -> list[Variant]:
    """The ``sweep.variants`` list (schema-validated) as Variants, in config order."""
    return [Variant(str(item["name"]), dict(item["set"])) for item in raw]


def apply_variant(config: Mapping[str, Any], variant: Variant) -> dict[str, Any]:
    """A deep copy of ``config`` with the variant's settings written in."""
    out = copy.deepcopy(dict(config))
    for key, value in variant.settings.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: {part!r} is not a config section")
        node[leaf] = copy.deepcopy(value)
    return out


def stage_sections(models: Mapping[str, ModelSpec]) -> set[str]:
    """The config sections a variant may edit: the training stages'."""
    return {"pretrain", "pretrain_ecg_only"} | {spec.section for spec in models.values()}


def retrained(variant: Variant, models: Mapping[str, ModelSpec]) -> tuple[list[str], list[str]]:
    """The stage-1 encoders and the models (registry order) that the variant re-trains."""
    sections = variant.sections
    encoders = {"pretrain", "pretrain_ecg_only"} if "pretrain" in sections else set()
    if "pretrain_ecg_only" in sections:
        encoders.add("pretrain_ecg_only")
    changed = set(encoders)
    grew = True
    while grew:  # a model downstream of a re-trained stage is re-trained too
        grew = False
        for name, spec in models.items():
            upstream = {spec.init, spec.teacher} & changed
            if name not in changed and (spec.section in sections or upstream):
                changed.add(name)
                grew = True
    return [e for e in PRETRAINED if e in encoders], [m for m in models if m in changed]


def variant_errors(
    config: Mapping[str, Any], schema: Mapping[str, Any], models: Mapping[str, ModelSpec]
) -> list[str]:
    """Every problem of ``sweep.variants``, each naming the variant and the key."""
    errors: list[str] = []
    allowed = stage_sections(models)
    validator = jsonschema.validators.validator_for(schema)(schema)
    seen: set[str] = set()
    for i, variant in enumerate(parse_variants(config["sweep"]["variants"])):
        where = f"sweep.variants[{i}] ({variant.name})"
        if not NAME.match(variant.name) or variant.name == DEFAULT:
            errors.append(f"{where}: name must match {NAME.pattern} and not be {DEFAULT!r}")
        if variant.name in seen:
            errors.append(f"{where}: the name is used twice")
        seen.add(variant.name)
        bad = sorted(variant.sections - allowed)
        if bad:
            errors.append(
                f"{where}: {bad[0]} is not a training stage's section; a variant sets keys of "
                f"{', '.join(sorted(allowed))}"
            )
            continue
        errors += _merged_errors(where, config, variant, validator)
    return errors


def _merged_errors(
    where: str, config: Mapping[str, Any], variant: Variant, validator: Any
) -> list[str]:
    try:
        merged = apply_variant(config, variant)
    except ValueError as err:
        return [f"{where}: {err}"]
    found = [
        f"{where}: {'.'.join(map(str, e.absolute_path)) or '(config)'}: {e.message}"
        for e in validator.iter_errors(merged)
    ]
    if found:
        return found
    return [f"{where}: {e}" for e in config_errors(merged)]


def repeats_default(config: Mapping[str, Any], variant: Variant) -> bool:
    """Whether every setting of the variant already equals the config's.

    Not an error: it is what a user gets after adopting a variant's setting as the default,
    and it must not stop the main workflow; the sweep leaves such a variant out (its row
    would repeat the default's), and the Snakefile says so.
    """
    return apply_variant(config, variant) == dict(config)
