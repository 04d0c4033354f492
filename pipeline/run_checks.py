"""Checks of the runs a config asks for: each sweep variant and regime cell, before the DAG.

Every message names the variant (or cell) and the key, so a typo in ``sweep.variants``
stops the workflow with one line per problem instead of a failed job hours later.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import jsonschema

from pipeline.config_checks import config_errors
from pipeline.runs import (
    DATA_KEYS,
    DEFAULT,
    NAME,
    WORLD,
    Run,
    Stages,
    cohort_settings,
    parse_variants,
    resolve,
)
from pipeline.sources import DATASETS


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
        bad = sorted({k.split(".")[0] for k in run.overrides if k not in DATA_KEYS} - allowed)
        if bad:
            errors.append(
                f"{where}: {bad[0]} is not a training stage's section; a variant sets keys of "
                f"{', '.join(sorted(allowed))}, or {' or '.join(DATA_KEYS)}"
            )
            continue
        errors += axis_errors(where, config, run)
        errors += _resolved_errors(where, config, run, validator)
    return errors


def axis_errors(where: str, config: Mapping[str, Any], run: Run) -> list[str]:
    """A world other than the config's needs a synthetic cohort, generated under results/."""
    world = cohort_settings(resolve(config, run))["world"]
    if world == cohort_settings(config)["world"]:
        return []
    if not config["source"]["synthetic"]:
        return [f"{where}: {WORLD} needs source.synthetic: true (real MIMIC has one world)"]
    outside = [k for k in DATASETS if not under(config["source"][k], config["results"])]
    if outside:
        return [
            f"{where}: {WORLD}: source.{outside[0]} must lie under results "
            f"({config['results']!r}) so that each world's cohort has a directory of its own"
        ]
    return []


def under(path: str, root: str) -> bool:
    """Whether ``path`` lies under directory ``root`` (both as written in the config)."""
    return PurePosixPath(path).is_relative_to(PurePosixPath(root))


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
