"""Config checks that need no data, run by the Snakefile before the DAG is built.

The JSON schema (``workflow/schemas/config.schema.yaml``) checks each key on its own;
what it cannot express (keys that constrain each other: fold roles against ``n_folds``,
crop lengths against the resampled record) is checked here, so a bad setting stops the
run at once instead of after the conversion and sharding jobs.

It also repairs one quirk of ``snakemake --config``: a nested value such as
``source='{synthetic: false, ...}'`` arrives with every scalar as a string.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import yaml

from pipeline.mimic_schema import FS_HZ, N_SAMPLES

MIN_FOLDS = 3  # train, validation and test each need a fold of their own
ROLES = ("train_folds", "val_folds", "test_folds")

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def _allowed(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _typed(value: Any, types: Sequence[str]) -> bool:
    for name in types:
        if name == "string" and isinstance(value, str):
            return True
        # bool is an int subclass in Python but not a JSON integer or number
        if name in ("integer", "number") and isinstance(value, bool):
            continue
        if isinstance(value, _JSON_TYPES.get(name, ())):
            return True
    return False


def _as_float(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _properties(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """An object schema's properties, those of a local ``$ref`` (``#/$defs/...``) merged in
    key by key (a section's own entry adds its default to the shared type)."""
    props: dict[str, Any] = {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        props = dict(_properties(target, root))
    for key, node in schema.get("properties", {}).items():
        props[key] = {**props.get(key, {}), **node}
    return props


def coerce_cli_strings(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None
) -> Any:
    """``value`` with strings the schema types otherwise (``"false"`` -> False) parsed as YAML.

    ``snakemake --config key='{a: false}'`` loads nested values with YAML's base loader,
    which keeps every scalar a string; the schema then refuses ``'false'`` as a boolean.
    A string is replaced only when its YAML reading has a type the schema allows and is
    not a string itself, so paths such as ``/data/mimic-iv/3.1`` stay as they are.
    Mappings are updated in place (Snakemake's ``config`` object) and returned. ``root``:
    the whole schema, for local ``$ref`` (default: ``schema`` itself).
    """
    root = schema if root is None else root
    types = _allowed(schema)
    if isinstance(value, str) and types and "string" not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, str) and "number" in types:
            parsed = _as_float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
        return coerce_cli_strings(parsed, schema, root) if _typed(parsed, types) else value
    if isinstance(value, str) and "null" in types and value.strip() in ("null", "~"):
        return None
    if isinstance(value, MutableMapping):
        props = _properties(schema, root)
        for key in list(value):
            if key in props:
                value[key] = coerce_cli_strings(value[key], props[key], root)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        value = [coerce_cli_strings(item, schema["items"], root) for item in value]
    return value


def split_role_errors(n_folds: int, roles: Mapping[str, Sequence[int]]) -> list[str]:
    """Problems of the fold roles: too few folds, empty, out of range or shared roles.

    Args:
        n_folds: ``splits.n_folds``.
        roles: ``train_folds``, ``val_folds`` and ``test_folds`` of the ``splits`` section.
    """
    errors: list[str] = []
    if n_folds < MIN_FOLDS:
        errors.append(
            f"splits.n_folds: {n_folds} folds cannot give disjoint train, val and test "
            f"folds (need >= {MIN_FOLDS})"
        )
    owner: dict[int, str] = {}
    for key in ROLES:
        folds = list(roles.get(key, ()))
        if not folds:
            errors.append(f"splits.{key} is empty")
        for fold in folds:
            if not 0 <= fold < n_folds:
                errors.append(f"splits.{key}: fold {fold} outside [0, n_folds={n_folds})")
            elif owner.get(fold, key) != key:
                errors.append(f"splits.{key}: fold {fold} is also in splits.{owner[fold]}")
            elif fold in owner:
                errors.append(f"splits.{key}: fold {fold} listed twice")
            owner[fold] = key
    return errors


def _crop_errors(config: Mapping[str, Any]) -> list[str]:
    """Crops must fit the resampled 10 s record (samples = N_SAMPLES * fs_out / FS_HZ)."""
    fs_out = config["shard"]["fs_out"]
    if (N_SAMPLES * fs_out) % FS_HZ:
        return [f"shard.fs_out: {fs_out} Hz gives no whole number of samples per record"]
    length = N_SAMPLES * fs_out // FS_HZ
    crop, n_crops = config["train"]["crop_samples"], config["train"]["eval_crops"]
    if crop > length:
        return [f"train.crop_samples: {crop} > {length} samples per record at {fs_out} Hz"]
    if crop * n_crops > length:
        return [
            f"train.eval_crops: {n_crops} crops of {crop} samples do not fit the {length} "
            f"samples of a record at shard.fs_out={fs_out} Hz"
        ]
    return []


def config_errors(config: Mapping[str, Any]) -> list[str]:
    """Every data-free problem of a schema-validated config, each naming its key."""
    splits = config["splits"]
    errors = split_role_errors(splits["n_folds"], {key: splits[key] for key in ROLES})
    bins = list(splits["age_bins"])
    if any(b >= a for b, a in itertools.pairwise(bins)):
        errors.append(f"splits.age_bins: edges must increase strictly, got {bins}")
    errors += _crop_errors(config)
    clip = config["pretrain"]["clip"]
    if 1.0 / clip["temperature"] > clip["max_scale"]:
        errors.append(
            f"pretrain.clip.temperature: {clip['temperature']} gives a logit scale above "
            f"pretrain.clip.max_scale={clip['max_scale']}"
        )
    n_layers = config["model"]["ecg_encoder"]["n_layers"]
    for name in ("finetune_diagnoses", "method_regularised"):  # the stage-1 encoder's blocks
        frozen = config.get(name, {}).get("freeze_blocks", 0)
        if frozen > n_layers:
            errors.append(f"{name}.freeze_blocks: {frozen} > model.ecg_encoder.n_layers={n_layers}")
    return errors


def cuda_errors(config: Mapping[str, Any]) -> list[str]:
    """``train.device: cuda`` where torch sees no CUDA device (torch is imported only then).

    The Snakefile runs this when the jobs run on this machine; a cluster's nodes may have
    GPUs the submitting machine lacks, and there a training job checks for itself.
    """
    if config["train"]["device"] != "cuda":
        return []
    import torch

    if torch.cuda.is_available():
        return []
    return [
        f"train.device: 'cuda', but torch {torch.__version__} sees no CUDA device on this "
        "machine; set train.device to cpu or auto, or submit the jobs to GPU nodes "
        "(--profile profiles/slurm)"
    ]
