# Shared paths and helpers. Every artifact path is named once here (P) so rule files
# refer to each other's outputs by key, never by a re-typed string.
import os

from snakemake.exceptions import WorkflowError

from pipeline.config_checks import config_errors
from pipeline.priorities import EVALUATE, PROBE_ENCODER, PROBE_TABLE, RANDOM_INIT, REPORT
from pipeline.registry import PLUGINS_ENV, plugin_modules
from pipeline.registry import models as registered_models
from pipeline.run_checks import under
from pipeline.runs import sorted_settings
from pipeline.sources import (
    DATASETS,
    EXTRACT_INPUTS,
    TABLES,
    probes_ground_truth,
    source_errors,
    source_path,
)

# Rule scripts import `pipeline` from the repository root even where it is not
# pip-installed (e.g. --sdm conda envs). We set, not require, this variable, and every job
# (local or SLURM) re-evaluates this file, so no envvars assertion applies.
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.getenv("PYTHONPATH")) if p)
)

R = config["results"]
SRC = config["source"]
RUN = "{run}"  # a run's outputs sit under results/{run} (pipeline/runs.py; '' for the default)

# The supervised models (pipeline/registry.py): one train_model and one evaluate job each.
# Plugin modules from config reach every job (local or SLURM) through the environment,
# like PYTHONPATH above, so scripts see the same registry as the DAG.
_plugins = [*plugin_modules(), *config["model_registry"]["plugins"]]
os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys(_plugins))
MODELS = registered_models()
SUPERVISED = {name: spec.task for name, spec in MODELS.items()}  # model -> task

P = {
    # Upstream of training, {run} is a data prefix (PLAN.data: '' for the default run's
    # cohort, regime/world-null/ for another world's), every run of that world reads.
    # synthetic cohort (only with source.synthetic) and its ground truth
    "synthetic_done": f"{R}/{RUN}synthetic/cohort.json",
    "ground_truth": f"{R}/{RUN}synthetic/ground_truth/latent.parquet",
    # extract
    "parquet": f"{R}/{RUN}parquet/{{table}}.parquet",
    "cohort": f"{R}/{RUN}extract/cohort.parquet",
    "cohort_dropped": f"{R}/{RUN}extract/cohort_dropped.tsv",
    "features": f"{R}/{RUN}extract/features.parquet",
    "feature_manifest": f"{R}/{RUN}extract/feature_manifest.tsv",
    "labels": f"{R}/{RUN}extract/labels.parquet",
    "label_manifest": f"{R}/{RUN}extract/label_manifest.tsv",
    "lab_targets": f"{R}/{RUN}extract/lab_targets.parquet",
    "lab_target_manifest": f"{R}/{RUN}extract/lab_target_manifest.tsv",
    # shard (keyed by record, never by split)
    "shard_group": f"{R}/{RUN}shards/group_{{group}}",
    "shard_index": f"{R}/{RUN}shards/index.parquet",
    "quarantine": f"{R}/{RUN}shards/quarantine.tsv",
    # stage 1 beyond the ED cohort (beyond_cohort.enabled): out-of-cohort ECGs with their
    # features, their own shard groups beside the cohort's, and an index over both
    "beyond": f"{R}/{RUN}extract/beyond_cohort.parquet",
    "beyond_dropped": f"{R}/{RUN}extract/beyond_cohort_dropped.tsv",
    "beyond_shard_group": f"{R}/{RUN}shards/beyond_group_{{group}}",
    "shard_index_beyond": f"{R}/{RUN}shards/index_with_beyond.parquet",
    "quarantine_beyond": f"{R}/{RUN}shards/quarantine_with_beyond.tsv",
    "beyond_ids": f"{R}/{RUN}splits/beyond_train_ids.parquet",
    # splits and the per-stage id lists that training reads
    "folds": f"{R}/{RUN}splits/folds.parquet",
    "ids": f"{R}/{RUN}splits/{{part}}_ids.parquet",
    # label_fraction: {labels} is '' at the config's, _<fraction> for a run's other one
    "train_labelled_ids": f"{R}/{RUN}splits/train_labelled_ids{{labels}}.parquet",
    "lab_targets_selected": f"{R}/{RUN}splits/lab_targets_selected.tsv",
    # models of a run (the default run's at results/models/...)
    "pretrain_dir": f"{R}/{RUN}models/pretrain",
    "pretrain_ecg_only_dir": f"{R}/{RUN}models/pretrain_ecg_only",
    "model_dir": f"{R}/{RUN}models/{{model}}",
    "predictions": f"{R}/{RUN}predictions/{{model}}.npz",
    # evaluation of a run's models, and the default run's report
    "evaluation": f"{R}/{RUN}evaluation/{{model}}.json",
    "per_label": f"{R}/{RUN}evaluation/{{model}}_per_label.csv",
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
    "probe_scores": f"{R}/probe/{{encoder}}.npz",  # one encoder's probes (rule probe_encoder)
}

# Stop before the DAG is built on settings that contradict each other or name missing data.
_errors = [*source_errors(config), *config_errors(config)]
if _errors:
    raise WorkflowError("invalid config:\n  " + "\n  ".join(f"config {e}" for e in _errors))


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


def path(key, run="", **wildcards):
    """P[key] of run ``run`` (a prefix; the default run's unless given)."""
    return P[key].format(run=run, **wildcards)


def source(run=""):
    """config ``source`` of data prefix ``run``: as configured for the default run's cohort;
    another world's dataset roots sit at the same place under results/<run>."""
    if not run:
        return SRC
    moved = {k: f"{R}/{run}{Path(SRC[k]).relative_to(R).as_posix()}" for k in DATASETS}
    return {**SRC, **moved}


def section(*keys):
    """A config section for `params:`, keys sorted at every level (sorted_settings)."""
    value = config
    for key in keys:
        value = value[key]
    return sorted_settings(value)


def extract_inputs(stage):
    return {t: parquet(t) for t in EXTRACT_INPUTS[stage]}


def parquet(table, run=RUN):
    return path("parquet", run, table=table)


def ids(part, run=RUN):
    """A fold's id list of data prefix ``run`` (default: the rule's {run} wildcard)."""
    return path("ids", run, part=part)


# Inputs from this size on (MB) are real-MIMIC-sized: a data-preparation job reserves its
# rule's threads there (parsing threads, worker processes). Below, on the synthetic cohort,
# such a job takes ~1 s, mostly start-up: it reserves 1 core, so on 2 cores independent ones
# (the 12 conversions, the 2 shard groups, the extractions) run side by side, not one by one.
LARGE_INPUT_MB = 16


def data_threads(most):
    """threads: ``most`` for large inputs, 1 for small ones (LARGE_INPUT_MB). Inputs not
    made yet count as empty (a dry run shows 1); Snakemake evaluates threads again when the
    job is ready to start, its inputs made."""

    def threads(wildcards, input):
        size = sum(os.path.getsize(f) for f in input if os.path.isfile(f))
        return most if size >= LARGE_INPUT_MB * 1e6 else 1

    return threads


def log(name, run=""):
    return f"{R}/{run}logs/{name}.log"


def bench_tsv(name, run=""):
    """Per-job wall, CPU seconds and peak memory (Snakemake's benchmark table)."""
    return f"{R}/{run}benchmarks/{name}.tsv"


# What each task trains on: targets and their names.
TASK_TARGETS = {  # P keys
    "diagnoses": {"targets": "labels", "target_names": "label_manifest"},
    "labs": {"targets": "lab_targets", "target_names": "lab_targets_selected"},
}


def plots_category(wildcards):
    """HTML report (`snakemake --report`) category of a file in results/plots, from the
    report() pattern that matched it: {figure}.png or {table}.csv (explanations_lift.csv,
    the values behind the lift heatmap)."""
    return "Explanations" if "table" in wildcards.keys() else "Figures"


# Stage 1 beyond the ED cohort (beyond.smk): what pretrain and pretrain_ecg_only read.
BEYOND = config["beyond_cohort"]["enabled"]


def stage1_inputs(tabular):
    """pretrain's (tabular) and pretrain_ecg_only's shard index and out-of-cohort inputs."""
    # data_file (runs.smk): the files of the {run} wildcard's world, shared by its runs
    if not BEYOND:
        return {"shard_index": data_file("shard_index")}
    extra = {"beyond_features": data_file("beyond")} if tabular else {}
    index, beyond_ids = data_file("shard_index_beyond"), data_file("beyond_ids")
    return {"shard_index": index, "beyond_ids": beyond_ids, **extra}
