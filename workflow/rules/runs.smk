# The runs (pipeline/runs.py): the default run, `snakemake study`'s seeds, `snakemake
# sweep`'s variants and `snakemake regime`'s cells, each a name and the settings it
# overrides. One rule per stage serves them all through the {run} wildcard
# (results/{run}models/...); a run re-trains only the stages its settings reach
# (PLAN.retrained, PLAN.owner) and reads extraction, shards and splits from its world's
# data prefix (PLAN.data: the default run's, or results/regime/world-<world>/), the same
# rules' outputs under that prefix.
import re

from pipeline.priorities import remaining_work, stage_cost
from pipeline.registry import PRETRAINED
from pipeline.run_checks import axis_errors, variant_errors
from pipeline.runs import (
    Plan,
    Stages,
    regime_runs,
    study_rows,
    study_runs,
    sweep_rows,
    sweep_runs,
)

_objectives = SCHEMA["properties"]["pretrain"]["properties"]["objective"]["enum"]
STAGES = Stages(MODELS, _objectives)
_errors = variant_errors(config, SCHEMA, STAGES)
if _errors:
    raise WorkflowError("invalid config:\n  " + "\n  ".join(f"config {e}" for e in _errors))
STUDY_RUNS = study_runs(config, STAGES)
SWEEP_RUNS, _left_out = sweep_runs(config, STAGES)
for _warning in _left_out:
    logger.warning(_warning)
REGIME_RUNS = regime_runs(config, STAGES)
REGIME_ERRORS = [e for r in REGIME_RUNS for e in axis_errors(f"regime ({r.name})", config, r)]
if REGIME_ERRORS:  # only `snakemake regime` needs these runs (regime.smk says why it stops)
    REGIME_RUNS = []
PLAN = Plan.of(config, STAGES, [*STUDY_RUNS, *SWEEP_RUNS, *REGIME_RUNS])


wildcard_constraints:
    # runs' prefixes, and the data prefixes of their worlds (upstream rules)
    run="|".join(map(re.escape, dict.fromkeys([*PLAN.runs, *PLAN.datasets]))),


def data_file(key, **wildcards):
    """input: P[key] of the {run} wildcard's world (PLAN.data: shared by its runs)."""
    return lambda wc: path(key, PLAN.data(wc.run), **wildcards)


def stage_dir(run, node):
    """Training stage ``node``'s directory (a stage-1 encoder's or a model's) as run ``run``
    reads it: the run's own where it re-trains the stage, else the default run's."""
    key = f"{node}_dir" if node in PRETRAINED else "model_dir"
    return path(key, PLAN.owner(run, node), model=node)


def run_files(key, rows):
    """P[key] for every (run, model) row, from the run that trained that model."""
    return [path(key, PLAN.owner(run.prefix, model), model=model) for run, model in rows]


def regime_files(key):
    """input: P[key] of every regime cell (REGIME_ROWS, regime.smk); a grid the config
    cannot serve (REGIME_ERRORS above) stops here, so that only `snakemake regime` is refused."""

    def files(wildcards):
        if REGIME_ERRORS:
            lines = "\n  ".join(f"config {e}" for e in REGIME_ERRORS)
            raise WorkflowError(f"invalid config:\n  {lines}")
        return run_files(key, REGIME_ROWS)  # REGIME_ROWS: regime.smk

    return files


def setting(key, node=None):
    """params: the run's ``key`` settings of stage ``node`` (None: the {model} wildcard)."""
    return lambda wc: PLAN.settings(wc.run, node or wc.model)[key]


def training_threads(node=None):
    """threads: the cores a training job reserves, the run's train.num_threads (torch's
    threads too; 1 by default, so two jobs share 2 cores), or 8 (capped at --cores; a
    profile's set-threads wins) where it is 0."""
    return lambda wc: PLAN.settings(wc.run, node or wc.model)["train"]["num_threads"] or 8


def run_cost(run):
    """A training stage's estimated work in run ``run`` (pipeline.priorities.stage_cost)."""
    fraction = PLAN.resolved[run]["label_fraction"]

    def cost(stage):
        settings = PLAN.settings(run, stage) | {"label_fraction": fraction}
        return stage_cost(stage, settings, MODELS)

    return cost


def training_priority(node=None):
    """priority: the estimated work on the longest chain from the job to the end of the
    run, with the run's settings (pipeline.priorities): the longest chains start first."""
    return lambda wc: remaining_work(node or wc.model, MODELS, run_cost(wc.run))


# priority of data preparation (extraction, shards, splits, label subsets, lab targets):
# every training chain waits on it, so it goes ahead of the longest one (the default run's).
PREPARATION = 1 + max(remaining_work(n, MODELS, run_cost("")) for n in [*PRETRAINED, *MODELS])


def checkpoints(node=None):
    """params: the run's resume-checkpoint directory of ``node`` (None: the {model})."""
    return lambda wc: f"{R}/{wc.run}checkpoints/{node or wc.model}"


def training_inputs(wildcards):
    """train_model's named inputs (SupervisedInputs' fields) from the model's registry
    entry: the task's targets, the tabular features where it (or its teacher) has any, the
    directory its encoder starts from where it does not start from scratch, and its
    teacher's model directory where it is distilled."""
    spec, run = MODELS[wildcards.model], wildcards.run
    data = PLAN.data(run)
    inputs = {
        "shard_index": path("shard_index", data),
        **{f"{part}_ids": ids(part, data) for part in ("train", "val", "test")},
        **{k: path(key, data) for k, key in TASK_TARGETS[spec.task].items()},
    }
    if spec.task == "diagnoses":  # label_fraction: only the labelled training subjects
        inputs["train_ids"] = path("train_labelled_ids", data, labels=PLAN.labels(run))
    teacher = MODELS[spec.teacher] if spec.teacher is not None else None
    if spec.tabular is not None or (teacher is not None and teacher.tabular is not None):
        inputs |= {k: path(k, data) for k in ("features", "feature_manifest")}
    if spec.init is not None:
        inputs["init_dir"] = stage_dir(run, spec.init)
    if teacher is not None:
        inputs["teacher_dir"] = stage_dir(run, teacher.name)
    return inputs
