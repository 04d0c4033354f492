"""One source of defaults: every config dataclass agrees with the JSON schema, key by key.

The schema (``workflow/schemas/config.schema.yaml``) holds the defaults; config.yaml equals
them (``test_config.py``). Python restates a default wherever a dataclass field or a
constructor argument has one; this file walks every such class that maps to a schema
section and fails on any drift, naming the key and both values. A field without a schema
key, or a schema key without a field, must be listed below with the reason.

The preprocessing a model was trained with is not config but a record: it is stored in
model.json and read back whole (tests at the end); the inference CLI reproducing the
pipeline's predictions from raw records with only model.json is
``test_workflow.py::test_explain_cli_reproduces_pipeline_predictions_from_raw_wfdb``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.data.beyond import BeyondConfig
from pipeline.data.cohort import CohortConfig
from pipeline.data.convert import ConvertConfig
from pipeline.data.features import FeatureConfig
from pipeline.data.lab_targets import LabTargetConfig
from pipeline.data.labels import LabelConfig
from pipeline.data.preprocessing import Preprocessing
from pipeline.data.shard import ShardConfig
from pipeline.data.splits import SplitConfig
from pipeline.evaluation.evaluate import EvalConfig
from pipeline.evaluation.lab_lift import ExplainConfig
from pipeline.evaluation.probe import ProbeConfig
from pipeline.infer.bundle import load_bundle
from pipeline.losses import BarlowTwinsLoss, ClipLoss, VICRegLoss
from pipeline.models import ECGEncoder, TabularEncoder
from pipeline.synth.cohort import SynthConfig
from pipeline.tracking import TrackingConfig
from pipeline.train.augment import EcgAugmentConfig
from pipeline.train.engine import TrainConfig
from pipeline.train.pretrain_config import PretrainConfig
from pipeline.train.stage_config import STAGE_CONFIGS, StageConfig
from tests.infer_fixtures import write_model_dir
from tests.snakemake_helpers import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
MISSING = object()  # a required field / argument: nothing restated, nothing to drift

# schema section (dotted) -> the class whose fields or constructor arguments it configures
SECTIONS: dict[str, Callable[..., Any]] = {
    "synthetic": SynthConfig,
    "convert": ConvertConfig,
    "cohort": CohortConfig,
    "features": FeatureConfig,
    "beyond_cohort": BeyondConfig,
    "labels": LabelConfig,
    "lab_targets": LabTargetConfig,
    "shard": ShardConfig,
    "splits": SplitConfig,
    "model.ecg_encoder": ECGEncoder,
    "model.tabular_encoder": TabularEncoder,
    "train": TrainConfig,
    "pretrain": PretrainConfig,
    "pretrain.barlow_twins": BarlowTwinsLoss,
    "pretrain.vicreg": VICRegLoss,
    "pretrain.clip": ClipLoss,
    "pretrain_ecg_only.augment": EcgAugmentConfig,
    "supervised": StageConfig,  # the shared settings: the baselines' defaults
    "evaluate": EvalConfig,
    "probe": ProbeConfig,
    "explain": ExplainConfig,
    "mlflow": TrackingConfig,
}
# Schema sections no Python class restates: read by the Snakefile or the rules only.
UNMAPPED = {
    "source": "dataset paths, resolved by the Snakefile",
    "study": "the seed list, expanded by the Snakefile",
    "sweep": "the variant list, read by pipeline.runs (defaults in config.yaml = schema)",
    "regime": "the grid of worlds, label fractions, seeds and models, read by pipeline.runs",
    "model_registry": "plugin module names, exported to jobs by common.smk",
    "model": "a container of the two encoder sections",
    "pretrain_ecg_only": "a container of its augment section",
    # a model's section holds only how it differs from `supervised`: its resolved settings
    # equal its dataclass's defaults (tests/test_supervised_settings.py)
    **dict.fromkeys(STAGE_CONFIGS, "resolved over `supervised`, see test_supervised_settings"),
}
# (class, field): why it has no key in that section.
CODE_ONLY = {
    ("SynthConfig", "extra_lab_draws"): "benchmark knob (bench/scaling.py)",
    ("SynthConfig", "write_waveforms"): "benchmark knob: table-only cohorts",
    ("ShardConfig", "fs_in"): "MIMIC-IV-ECG's fixed rate, checked per record",
    ("ShardConfig", "n_samples"): "MIMIC-IV-ECG's fixed length, checked per record",
    ("SplitConfig", "label_chunk"): "memory/speed knob of the stratification",
    ("ECGEncoder", "in_channels"): "the 12 leads of pipeline.mimic_schema.LEADS",
    ("TabularEncoder", "n_continuous"): "from the feature table",
    ("TabularEncoder", "cat_cardinalities"): "from the feature table",
    # a pretrained encoder's settings: set only in the sections whose models start from one
    ("StageConfig", "freeze_blocks"): "baselines train from scratch: nothing to freeze",
    ("StageConfig", "freeze_encoder"): "baselines train from scratch: nothing to freeze",
    ("StageConfig", "encoder_lr"): "baselines train from scratch: one rate",
    ("TrackingConfig", "results_dir"): "the top-level key `results` (checked below)",
}
# section.key: why the schema has it but the class has no field of that name.
SCHEMA_ONLY = {
    "model.ecg_encoder.name": "builder name (pipeline.models.builders), not an argument",
    "model.tabular_encoder.name": "builder name (pipeline.models.builders), not an argument",
}
# section.key: code defaults deliberately unlike the schema's, each equal to the file named.
DELIBERATE = {
    # ECGEncoder() is the reference work's architecture; the schema's sizes suit the
    # embedded synthetic cohort, configs/mimic.yaml restores the reference ones.
    "model.ecg_encoder.d_model": "configs/mimic.yaml",
    "model.ecg_encoder.n_layers": "configs/mimic.yaml",
    "model.ecg_encoder.dropout": "configs/mimic.yaml",
    # TrainConfig() keeps the rule's (or torch's) threads; the schema's 1 thread per training
    # job suits the small default models on few cores (two jobs side by side on 2 cores).
    "train.num_threads": "configs/mimic.yaml",
}
# Config dataclasses that map to no section: built from other sections or by the CLI.
NOT_SECTIONS = {
    **{cls.__name__: "a model's section over `supervised`" for cls in STAGE_CONFIGS.values()},
    "LoopConfig": "built from a stage's section (epochs, schedule, warm-up, patience)",
    "PredictConfig": "the inference CLI's own options",
}


def _node(path: str) -> dict[str, Any]:
    node: dict[str, Any] = SCHEMA
    for key in path.split("."):
        node = node["properties"][key]
    return node


def _schema_default(node: dict[str, Any]) -> Any:
    """A key's default; an object's is its properties' defaults (what validation fills in)."""
    if node.get("type") == "object" and "properties" in node:
        return {k: _schema_default(v) for k, v in node["properties"].items()}
    return node.get("default", MISSING)


def code_defaults(target: Callable[..., Any]) -> dict[str, Any]:
    """Field (dataclass) or constructor-argument defaults; MISSING where required."""
    if dataclasses.is_dataclass(target):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(target):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = MISSING
        return out
    params = list(inspect.signature(target).parameters.values())
    return {
        p.name: MISSING if p.default is inspect.Parameter.empty else p.default
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _plain(value: Any) -> Any:
    """Lists and tuples alike (YAML has no tuples); nested dicts compared the same way."""
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal defaults; a bool only equals a bool (True == 1 in Python, not in the schema)."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def drift(section: str, target: Callable[..., Any]) -> list[str]:
    """Every disagreement between ``section``'s schema and ``target``, one line each."""
    name = target.__name__
    props = _node(section)["properties"]
    code = code_defaults(target)
    problems = []
    for key, node in props.items():
        where = f"{section}.{key}"
        if key not in code:
            if where not in SCHEMA_ONLY:
                problems.append(f"{where}: no field or argument {key!r} in {name}")
            continue
        ours, theirs = code[key], _schema_default(node)
        if ours is MISSING or where in DELIBERATE:
            continue
        if not same(ours, theirs):
            problems.append(f"{where}: {name}.{key} defaults to {ours!r}, the schema to {theirs!r}")
    for key in code:
        if key not in props and (name, key) not in CODE_ONLY:
            problems.append(f"{section}: {name}.{key} has no schema key (list it in CODE_ONLY)")
    return problems


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_no_drift_between_schema_and_code_defaults(section: str) -> None:
    assert drift(section, SECTIONS[section]) == []


def test_every_schema_section_is_mapped_or_explained() -> None:
    def sections(node: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, child in node.get("properties", {}).items():
            if child.get("type") == "object" and "properties" in child:
                out += [f"{prefix}{key}", *sections(child, f"{prefix}{key}.")]
        return out

    missing = [s for s in sections(SCHEMA) if s not in SECTIONS and s not in UNMAPPED]
    assert missing == [], f"schema sections without a class or a reason: {missing}"


def test_every_config_dataclass_is_checked() -> None:
    found = set()
    for path in (REPO / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                found.add(node.name)
    checked = {t.__name__ for t in SECTIONS.values()}
    assert found - checked - set(NOT_SECTIONS) == set()
    assert set(NOT_SECTIONS) <= found  # no stale entries


def test_the_exemption_lists_are_not_stale() -> None:
    names = {t.__name__: t for t in SECTIONS.values()}
    for cls, key in CODE_ONLY:
        assert key in code_defaults(names[cls]), (cls, key)
    for where in [*SCHEMA_ONLY, *DELIBERATE]:
        section, key = where.rsplit(".", 1)
        assert key in _node(section)["properties"], where


def test_results_dir_default_is_the_results_key() -> None:
    assert TrackingConfig().results_dir == SCHEMA["properties"]["results"]["default"]


def test_deliberate_differences_equal_the_file_they_name() -> None:
    for where, file in DELIBERATE.items():
        section, key = where.rsplit(".", 1)
        values: Any = yaml.safe_load((REPO / file).read_text())
        for part in section.split("."):
            values = values[part]
        assert same(code_defaults(SECTIONS[section])[key], values[key]), where


def test_a_drifted_default_is_named() -> None:
    @dataclasses.dataclass(frozen=True)
    class Drifted:
        batch_rows: int = 5
        projection: bool = True
        extra: int = 0

    assert drift("convert", Drifted) == [
        "convert.batch_rows: Drifted.batch_rows defaults to 5, the schema to 1000000",
        "convert: Drifted.extra has no schema key (list it in CODE_ONLY)",
    ]
    assert not same(1, True) and same([1, 2], (1, 2)) and same(1, 1.0)


# --- the training preprocessing: stored in model.json, read back whole -------------------


def _prep() -> dict[str, Any]:
    return ShardConfig(n_groups=1, shard_size=8, fs_out=100, clip_mv=2.5).preprocessing().to_dict()


def test_model_json_preprocessing_has_every_setting(tmp_path: Path) -> None:
    meta = json.loads((write_model_dir(tmp_path) / "model.json").read_text())
    stored = meta["preprocessing"]
    assert set(stored) == {f.name for f in dataclasses.fields(Preprocessing)}
    for key in ("fs", "leads", "clip_mv", "crop_samples", "eval_crops", "imputation"):
        assert stored[key] is not None, key


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(Preprocessing)])
def test_reading_preprocessing_never_fills_in_a_default(key: str) -> None:
    d = _prep()
    assert Preprocessing.from_dict(d).clip_mv == 2.5  # the stored value, not 3.0
    del d[key]
    with pytest.raises(ValueError, match=rf"\['{key}'\] missing"):
        Preprocessing.from_dict(d, "model.json preprocessing")


def test_inference_refuses_preprocessing_it_cannot_repeat(tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path)
    meta = json.loads((model_dir / "model.json").read_text())
    meta["preprocessing"]["leads"] = meta["preprocessing"]["leads"][::-1]
    (model_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"preprocessing\.leads is"):
        load_bundle(model_dir)
