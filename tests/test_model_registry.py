"""One table of models (pipeline/registry.py): one training rule, and a model added by a
plugin module (config model_registry.plugins) is trained, evaluated and reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation.report import ReportOutputs, build_report
from pipeline.registry import BUILTIN, PLUGINS_ENV, model_names, spec
from tests.snakemake_helpers import REPO, planned_rules, snakemake, write_config
from tests.test_report import CFG, DIAG, LABS, _targets, evaluate_all, write_manifests

TEST_CONFIG = REPO / ".test/config.yaml"
PLUGIN = "tests.model_plugin"
EXTRA = "signal_only_labs"


def _dry_run(workdir: Path, *config: str) -> tuple[dict[str, int], str]:
    cfg = write_config(workdir / "override.yaml", TEST_CONFIG.read_text(), config)
    proc = snakemake(workdir, cfg, "-n")
    return planned_rules(proc), proc.stdout + proc.stderr


def test_one_training_rule_for_every_builtin_model(tmp_path: Path) -> None:
    planned, _ = _dry_run(tmp_path)
    assert planned["train_model"] == planned["evaluate"] == len(BUILTIN)
    assert "method_regularised" in model_names()
    old = ("finetune", "baseline")
    assert not [rule for rule in planned if rule.startswith(old)]


def test_plugin_model_enters_the_dag(tmp_path: Path) -> None:
    planned, text = _dry_run(tmp_path, "model_registry:", f"  plugins: [{PLUGIN}]")
    assert planned["train_model"] == planned["evaluate"] == len(BUILTIN) + 1
    assert f"model={EXTRA}" in text
    assert f"results/models/{EXTRA}" in text and f"results/evaluation/{EXTRA}.json" in text


def test_plugin_models_follow_the_builtin_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    builtin = tuple(m.name for m in BUILTIN)
    assert model_names() == builtin
    monkeypatch.setenv(PLUGINS_ENV, PLUGIN)
    assert model_names() == (*builtin, EXTRA) and spec(EXTRA).init is None
    with pytest.raises(ValueError, match="unknown model"):
        spec("no_such_model")


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ('ModelSpec("signal_only", "diagnoses", None, None, "mlp")', "registered twice"),
        ('ModelSpec("x", "labs", "no_such_model", None, "mlp")', "init 'no_such_model'"),
        ('ModelSpec("pretrain", "labs", None, None, "mlp")', "not one of .'pretrain'"),
        ('ModelSpec("pretrain_ecg_only", "labs", None, None, "mlp")', "not one of"),
        (
            'ModelSpec("x", "labs", None, None, "mlp", teacher="signal_only")',
            "teacher 'signal_only' has another task",
        ),
        ('ModelSpec("x", "labs", None, None, "mlp", compare=("nope",))', "compare 'nope'"),
    ],
)
def test_plugin_entries_the_workflow_cannot_wire_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, error: str
) -> None:
    module = f"bad_plugin_{abs(hash(entry))}"
    (tmp_path / f"{module}.py").write_text(
        f"from pipeline.registry import ModelSpec\nMODELS = ({entry},)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(PLUGINS_ENV, module)
    with pytest.raises(ValueError, match=error):
        model_names()


def _world(root: Path) -> dict[str, Path]:
    """A predictions file per registered model (scores informative to varying degrees)."""
    rng = np.random.default_rng(1)
    study_id = rng.choice(10**8, size=len(_targets(np.random.default_rng(0))[0]), replace=False)
    diag, labs = _targets(np.random.default_rng(0))
    paths = {}
    for i, model in enumerate(model_names()):
        task = spec(model).task
        target = labs if task == "labs" else diag
        logit = (1 + i % 3) * np.nan_to_num(target, nan=0.5) + rng.normal(size=target.shape)
        paths[model] = root / "predictions" / f"{model}.npz"
        paths[model].parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            paths[model],
            study_id=study_id.astype(np.int64),
            prob=(1 / (1 + np.exp(-logit))).astype(np.float32),
            target=target,
            labels=np.array(LABS if task == "labs" else DIAG),
            task=np.array(task),
        )
    return paths


def test_plugin_model_in_table1_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The plugin is the environment variable the workflow sets from model_registry.plugins.
    monkeypatch.setenv(PLUGINS_ENV, PLUGIN)
    preds = _world(tmp_path)
    write_manifests(tmp_path)
    evals = evaluate_all(tmp_path, preds, None)
    outputs = ReportOutputs(*(tmp_path / n for n in ("t1.md", "t1.csv", "t1.json", "r.md", "p")))
    build_report(
        evals,
        preds,
        tmp_path / "label_manifest.tsv",
        tmp_path / "lab_target_manifest.tsv",
        outputs,
        CFG,
    )
    rows = json.loads(outputs.table1_json.read_text())["rows"]
    assert len(rows) == len({m.row for m in BUILTIN if m.row is not None}) + 1
    # the plugin's row (order 4) follows the paper's four, before the beyond-the-paper rows
    (extra,) = [r for r in rows if r["approach"] == "Supervised signal-only lab prediction (S4)"]
    assert rows.index(extra) == 4
    assert extra["labs"]["model"] == EXTRA and extra["diagnoses"] is None
    report = outputs.report_md.read_text()
    assert "Supervised signal-only lab prediction (S4)" in report
    assert f"| {EXTRA} |" in report  # the labels-evaluated table lists every model


def _planned_jobs(workdir: Path, *config: str) -> dict[str, str]:
    """Dry run on 2 cores: job (rule, plus the model) -> its block of the plan."""
    cfg = write_config(workdir / "override.yaml", TEST_CONFIG.read_text(), config)
    text = snakemake(workdir, cfg, "-n", "--cores", "2").stdout
    jobs: dict[str, str] = {}
    for b in text.split("\nrule ")[1:]:
        job = b.split(":", 1)[0] + b.partition("model=")[2].split("\n", 1)[0]
        jobs[job if job not in jobs else f"{job}#{len(jobs)}"] = b  # convert, convert#12, ...
    return jobs


def test_training_jobs_reserve_num_threads_cores(tmp_path: Path) -> None:
    jobs = _planned_jobs(tmp_path)
    trained = [b for job, b in jobs.items() if job.startswith(("pretrain", "train_model", "probe"))]
    probes = 3 + sum(m.probe for m in BUILTIN)  # untrained, stage 1 x 2, probed models
    assert len(trained) == len(BUILTIN) + 3 + probes  # stage 1 x 2, the probe table
    assert not [b for b in trained if "threads:" in b]  # num_threads 1: Snakemake prints none
    # small inputs (the synthetic cohort): data preparation reserves 1 core per job, so the
    # conversions and shard groups run side by side on 2 cores
    assert not [
        b
        for job, b in jobs.items()
        if job.startswith(("convert", "shard", "extract")) and "threads:" in b
    ]
    # priorities: the work left on the longest chain (pipeline.priorities, test_priorities)
    prio = {
        job: float(b.split("priority: ")[1].split()[0])
        for job, b in jobs.items()
        if "priority: " in b
    }
    assert prio["pretrain"] > prio["train_modelmethod_diagnoses"] > prio["train_modelmethod_labs"]
    assert prio["train_modelrandom_init_finetune"] > prio["train_modelmethod_labs"]
    assert min(v for j, v in prio.items() if j.startswith(("pretrain", "train_model"))) > max(
        v for j, v in prio.items() if j.startswith(("evaluate", "probe"))
    )
    jobs = _planned_jobs(tmp_path, "train:", "  num_threads: 0")  # the rule's 8, capped at 2
    trained = [
        b for job, b in jobs.items() if job.startswith(("pretrain", "train_model", "probe_"))
    ]
    assert all("threads: 2" in b for b in trained)
