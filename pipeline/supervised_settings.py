"""A supervised model's effective settings: the shared ``supervised`` section, then its own.

config.yaml writes the settings every supervised model shares once, in ``supervised``; a
model's section (``finetune_diagnoses``, ``baselines``, ...: :attr:`ModelSpec.section`)
states only how it differs, and any key it sets wins. The workflow (the ``train_model``
params), the sweep's reach and the tests all read a model's settings through
:func:`supervised_settings`, so "what a model trains with" has one definition.

This module imports neither torch nor snakemake: the Snakefile calls it while building
the DAG.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

SHARED = "supervised"  # the config section every supervised model starts from

# Values renamed in issue 21 ("probe" also named the knowledge probe and stage 1's collapse
# check): key -> {old value: new value}. An old value still works, with a FutureWarning.
RENAMED_VALUES: dict[str, dict[str, str]] = {"head_init": {"probe": "linear_fit"}}


def renamed_value(key: str, value: Any, where: str) -> Any:
    """``value`` of ``key`` with a renamed value replaced by its new name (and a warning)."""
    renames = RENAMED_VALUES.get(key, {})
    if isinstance(value, str) and value in renames:
        warnings.warn(
            f"{where}.{key}: {value!r} is deprecated, write {renames[value]!r} "
            "(same behaviour; renamed in issue 21)",
            FutureWarning,
            stacklevel=3,
        )
        return renames[value]
    return value


def supervised_settings(config: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The effective settings of the model(s) configured by ``section``.

    ``config["supervised"]`` overlaid with ``config[section]`` (one level: every key is a
    scalar or a list), deprecated values replaced. ``config`` is the validated config
    (the schema has filled in every default).

    Raises:
        KeyError: ``section`` is not in ``config``.
    """
    if section not in config:
        raise KeyError(f"config has no section {section!r} (a supervised model's settings)")
    own = config[section]
    merged = {**config.get(SHARED, {}), **own}
    return {
        key: renamed_value(key, value, section if key in own else SHARED)
        for key, value in merged.items()
    }
