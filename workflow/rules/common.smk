# Shared paths and helpers. Every artifact path is named once here (P) so rule files
# refer to each other's outputs by key, never by a re-typed string.
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

from pipeline.registry import PLUGINS_ENV, PRETRAINED, plugin_modules
from pipeline.registry import models as registered_models
from pipeline.supervised_settings import supervised_settings

# Rule scripts import `pipeline` from the repository root even where it is not
# pip-installed (e.g. --sdm conda envs). We set, not require, this variable, and every job
# (local or SLURM) re-evaluates this file, so no envvars assertion applies.
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.getenv("PYTHONPATH")) if p)
)

R = config["results"]
SRC = config["source"]

# MIMIC tables the pipeline reads (converted to parquet one job each).
TABLES = [
    "record_list",
    "patients",
    "admissions",
    "labevents",
    "d_labitems",
    "omr",
    "diagnoses_icd",
    "d_icd_diagnoses",
    "edstays",
    "triage",
    "vitalsign",
    "diagnosis",
]
# Which config.source root holds each table, and where under it.
TABLE_DATASET = {
    "record_list": "mimic_iv_ecg",
    "edstays": "mimic_iv_ed",
    "triage": "mimic_iv_ed",
    "vitalsign": "mimic_iv_ed",
    "diagnosis": "mimic_iv_ed",
}
TABLE_RELPATH = {"record_list": "record_list.csv"} | {
    t: f"ed/{t}.csv.gz" for t in ("edstays", "triage", "vitalsign", "diagnosis")
}

# The supervised models (pipeline/registry.py): one train_model and one evaluate job each.
# Plugin modules from config reach every job (local or SLURM) through the environment,
# like PYTHONPATH above, so scripts see the same registry as the DAG.
_plugins = [*plugin_modules(), *config["model_registry"]["plugins"]]
os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys(_plugins))
MODELS = registered_models()
SUPERVISED = {name: spec.task for name, spec in MODELS.items()}  # model -> task

P = {
    # synthetic cohort (only with source.synthetic) and its ground truth
    "synthetic_done": f"{R}/synthetic/cohort.json",
    "ground_truth": f"{R}/synthetic/ground_truth/latent.parquet",
    # extract
    "parquet": f"{R}/parquet/{{table}}.parquet",
    "cohort": f"{R}/extract/cohort.parquet",
    "cohort_dropped": f"{R}/extract/cohort_dropped.tsv",
    "features": f"{R}/extract/features.parquet",
    "feature_manifest": f"{R}/extract/feature_manifest.tsv",
    "labels": f"{R}/extract/labels.parquet",
    "label_manifest": f"{R}/extract/label_manifest.tsv",
    "lab_targets": f"{R}/extract/lab_targets.parquet",
    "lab_target_manifest": f"{R}/extract/lab_target_manifest.tsv",
    # shard (keyed by record, never by split)
    "shard_group": f"{R}/shards/group_{{group}}",
    "shard_index": f"{R}/shards/index.parquet",
    "quarantine": f"{R}/shards/quarantine.tsv",
    # splits and the per-stage id lists that training reads
    "folds": f"{R}/splits/folds.parquet",
    "ids": f"{R}/splits/{{part}}_ids.parquet",
    "lab_targets_selected": f"{R}/splits/lab_targets_selected.tsv",
    # models
    "pretrain_dir": f"{R}/models/pretrain",
    "pretrain_ecg_only_dir": f"{R}/models/pretrain_ecg_only",
    "model_dir": f"{R}/models/{{model}}",
    "predictions": f"{R}/predictions/{{model}}.npz",
    # evaluation and report
    "evaluation": f"{R}/evaluation/{{model}}.json",
    "per_label": f"{R}/evaluation/{{model}}_per_label.csv",
    "table1_md": f"{R}/table1.md",
    "table1_csv": f"{R}/table1.csv",
    "table1_json": f"{R}/table1.json",
    "report": f"{R}/report.md",
    "plots": f"{R}/plots",
    # the self-contained method_labs model (weights, ONNX, manifests, model card)
    "export_dir": f"{R}/export/method_labs",
    # probe: clinical knowledge in the frozen ECG encoders
    "probe_md": f"{R}/probe.md",
    "probe_csv": f"{R}/probe.csv",
    "probe_plot": f"{R}/probe.png",
}


# Parquet tables each extraction step reads.
EXTRACT_INPUTS = {
    "cohort": ["record_list", "edstays", "patients", "diagnoses_icd", "diagnosis"],
    "features": [
        "labevents",
        "d_labitems",
        "vitalsign",
        "triage",
        "omr",
        "admissions",
        "edstays",
    ],
    "labels": ["diagnoses_icd", "diagnosis", "d_icd_diagnoses"],
    "lab_targets": ["labevents", "d_labitems"],
}


def extract_inputs(stage):
    return {t: parquet(t) for t in EXTRACT_INPUTS[stage]}


def parquet(table):
    return P["parquet"].format(table=table)


def source_path(table):
    """The source csv(.gz) of a MIMIC table under its configured dataset root."""
    dataset = TABLE_DATASET.get(table, "mimic_iv")
    rel = TABLE_RELPATH.get(table, f"hosp/{table}.csv.gz")
    return f"{SRC[dataset]}/{rel}"


def ids(part):
    return P["ids"].format(part=part)


# What each task trains on: targets and their names.
TASK_TARGETS = {
    "diagnoses": {"targets": P["labels"], "target_names": P["label_manifest"]},
    "labs": {"targets": P["lab_targets"], "target_names": P["lab_targets_selected"]},
}


# The stage-1 directories a model can start from (pipeline.registry.PRETRAINED).
PRETRAINED_DIRS = {name: P[f"{name}_dir"] for name in PRETRAINED}


def model_dir(name):
    """The directory of a stage-1 encoder or of a registered model."""
    return PRETRAINED_DIRS.get(name) or P["model_dir"].format(model=name)


def training_inputs(wildcards):
    """train_model's named inputs (SupervisedInputs' fields) from the model's registry
    entry: the task's targets, the tabular features where it (or its teacher) has any, the
    directory its encoder starts from where it does not start from scratch, and its
    teacher's model directory where it is distilled."""
    spec = MODELS[wildcards.model]
    inputs = {
        "shard_index": P["shard_index"],
        **{f"{part}_ids": ids(part) for part in ("train", "val", "test")},
        **TASK_TARGETS[spec.task],
    }
    teacher = MODELS[spec.teacher] if spec.teacher is not None else None
    if spec.tabular is not None or (teacher is not None and teacher.tabular is not None):
        inputs |= {"features": P["features"], "feature_manifest": P["feature_manifest"]}
    if spec.init is not None:
        inputs["init_dir"] = model_dir(spec.init)
    if teacher is not None:
        inputs["teacher_dir"] = model_dir(teacher.name)
    return inputs


def shard_groups():
    return expand(P["shard_group"], group=range(config["shard"]["n_groups"]))


def log(name):
    return f"{R}/logs/{name}.log"


def bench_tsv(name):
    """Per-job wall, CPU seconds and peak memory (Snakemake's benchmark table)."""
    return f"{R}/benchmarks/{name}.tsv"


def plots_category(wildcards):
    """HTML report (`snakemake --report`) category of a file in results/plots, from the
    report() pattern that matched it: {figure}.png or {table}.csv (explanations_lift.csv,
    the values behind the lift heatmap)."""
    return "Explanations" if "table" in wildcards.keys() else "Figures"


def _check_sources():
    """Stop early, naming the config key, when a real-data source path is missing."""
    for key in ("mimic_iv", "mimic_iv_ed", "mimic_iv_ecg"):
        if not SRC["synthetic"] and not Path(SRC[key]).is_dir():
            raise WorkflowError(
                f"config source.{key}: directory {SRC[key]!r} does not exist "
                "(point it at the PhysioNet download, or set source.synthetic: true)"
            )
    missing = [source_path(t) for t in TABLES if not Path(source_path(t)).is_file()]
    if not SRC["synthetic"] and missing:
        raise WorkflowError(
            f"config source: {len(missing)} of {len(TABLES)} source tables not found, "
            f"e.g. {missing[0]!r} (paths follow the PhysioNet layout, see docs/mimic_schema.md)"
        )
    split_file = config["splits"]["file"]
    if split_file and not Path(split_file).is_file():
        raise WorkflowError(f"config splits.file: {split_file!r} does not exist")


def _check_settings():
    """Stop before the DAG is built on settings that contradict each other (no data needed)."""
    from pipeline.config_checks import config_errors

    errors = config_errors(config)
    if errors:
        raise WorkflowError("invalid config:\n  " + "\n  ".join(f"config {e}" for e in errors))


_check_sources()
_check_settings()


onstart:
    _check_device()


def _check_device():
    """train.device: cuda without CUDA stops the run before its first job (after the DAG is
    built: only then is the executor known), when the jobs run here and one of them trains."""
    if not workflow.local_exec:
        return  # cluster nodes may have GPUs the submitting machine lacks
    if not any("train" in job.rule.params.keys() for job in workflow.dag.needrun_jobs()):
        return
    from pipeline.config_checks import cuda_errors

    errors = cuda_errors(config)
    if errors:
        raise WorkflowError("invalid config:\n  " + "\n  ".join(f"config {e}" for e in errors))


def _sorted(value):
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def section(*keys, cfg=None):
    """A config section for `params:`, keys sorted at every level (of ``cfg``, a sweep
    variant's config, where given).

    Snakemake re-runs a job when its params differ from the last run, and it compares
    them in written order: without sorting, merely reordering keys in a config file
    (or a YAML dump that sorts them) would re-run every stage.
    """
    value = config if cfg is None else cfg
    for key in keys:
        value = value[key]
    return _sorted(value)


def model_settings(name, cfg=None):
    """A supervised model's effective settings for `params:` (section ``name`` over the
    shared ``supervised`` section, pipeline.supervised_settings), keys sorted."""
    return _sorted(supervised_settings(config if cfg is None else cfg, name))


def pretrain_section(cfg=None):
    """section("pretrain") without the argument blocks of the objectives it does not use, so
    that editing e.g. pretrain.vicreg does not re-run a Barlow Twins pre-training."""
    cfg = config if cfg is None else cfg
    names = SCHEMA["properties"]["pretrain"]["properties"]["objective"]["enum"]
    unused = set(names) - {cfg["pretrain"]["objective"]}
    return {k: v for k, v in section("pretrain", cfg=cfg).items() if k not in unused}
