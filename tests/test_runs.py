"""Runs as data (pipeline/runs.py): what a run re-trains, without starting Snakemake."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import yaml
from snakemake.utils import validate

from pipeline.registry import PLUGINS_ENV, models
from pipeline.run_checks import axis_errors, variant_errors
from pipeline.runs import (
    DEFAULT_RUN,
    Plan,
    Run,
    Stages,
    regime_runs,
    resolve,
    study_rows,
    study_runs,
    sweep_rows,
    sweep_runs,
)
from tests.snakemake_helpers import REPO

SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
OBJECTIVES = SCHEMA["properties"]["pretrain"]["properties"]["objective"]["enum"]
STAGES = Stages(models(), OBJECTIVES)
METHOD = ["pretrain", "pretrain_ecg_only", "method_diagnoses", "method_labs"]


@lru_cache(maxsize=1)
def _defaults() -> str:
    config: dict = {}
    validate(config, str(SCHEMA_PATH))  # the schema's defaults: config.yaml
    return json.dumps(config)


def _config() -> dict:
    return json.loads(_defaults())


def _retrained(settings: dict) -> set[str]:
    return set(STAGES.retrained(_config(), Run("r", settings, "grid")))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"method_regularised.l2sp_alpha": 0.01}, {"method_regularised"}),
        # the student only: its teacher (a baseline) is untouched
        ({"distilled.mix": 0.25}, {"distilled"}),
        # a shared section: every model on it (the random-init control too), and stage 3
        # on the method's encoder
        (
            {"finetune_diagnoses.encoder_lr": 1e-4},
            {"method_diagnoses", "method_labs", "ssl_ecg_only", "random_init_finetune"},
        ),
        # the baselines' section reaches the distilled student through its teacher
        (
            {"baselines.lr": 3e-4},
            {"signal_only", "multimodal_classification", "multimodal_labs", "distilled"},
        ),
        # stage 1: both encoders (pretrain_ecg_only takes pretrain's settings) and all on them
        (
            {"pretrain.barlow_twins.lambd": 0.05},
            {*METHOD, "method_regularised", "ssl_ecg_only"},
        ),
        ({"pretrain_ecg_only.augment.noise_std": 0.1}, {"pretrain_ecg_only", "ssl_ecg_only"}),
        # an objective the config does not use: no stage reads its block
        ({"pretrain.vicreg.var_weight": 30.0}, set()),
        # switching objective reads the other block: both encoders and all on them
        ({"pretrain.objective": "vicreg"}, {*METHOD, "method_regularised", "ssl_ecg_only"}),
        # a setting equal to the config's changes nothing
        ({"distilled.mix": 0.5}, set()),
        # settings every stage reads (a future grid over model size)
        ({"model.ecg_encoder.d_model": 32}, set(STAGES.nodes)),
    ],
)
def test_a_run_retrains_exactly_what_its_settings_reach(settings: dict, expected: set) -> None:
    assert _retrained(settings) == expected


def test_the_default_run_retrains_nothing_and_owns_every_output() -> None:
    plan = Plan.of(_config(), STAGES, [])
    assert list(plan.runs) == [""] and plan.retrained[""] == ()
    assert plan.owner("", "method_labs") == ""


def test_a_study_seed_is_every_stages_seed_and_seed_0_is_the_default_run() -> None:
    config = _config()
    seed0, seed1, seed2 = study_runs(config, STAGES)
    assert seed1.prefix == "study/seed1/" and seed1.name == "seed1"
    assert seed1.overrides["pretrain.seed"] == 1 and seed1.overrides["supervised.seed"] == 1
    resolved = resolve(config, seed1)  # every model reads the shared supervised seed
    assert {STAGES.settings(resolved, m)["stage"]["seed"] for m in STAGES.models} == {1}
    assert "pretrain_ecg_only.seed" not in seed1.overrides  # it reads pretrain.seed
    plan = Plan.of(config, STAGES, [seed0, seed1, seed2])
    assert plan.retrained[seed0.prefix] == ()  # the default run stands for seed 0
    assert plan.retrained[seed2.prefix] == STAGES.nodes
    rows = study_rows([seed0, seed1], ["signal_only", "method_labs"])
    assert [(run.name, m) for run, m in rows] == [
        ("seed0", "signal_only"),
        ("seed0", "method_labs"),
        ("seed1", "signal_only"),
        ("seed1", "method_labs"),
    ]
    assert plan.owner(seed0.prefix, "signal_only") == ""
    assert plan.owner(seed1.prefix, "signal_only") == "study/seed1/"


def test_a_stage_whose_seed_differs_is_its_only_study_retraining() -> None:
    config = _config()
    config["distilled"]["seed"] = 5  # the default run trains the student with seed 5
    (seed0,) = study_runs(config | {"study": {"seeds": [0]}}, STAGES)
    assert STAGES.retrained(config, seed0) == ("distilled",)


def test_a_sweep_variants_stage_reads_its_upstream_from_the_run_that_trained_it() -> None:
    config = _config()
    config["sweep"]["variants"] = [
        {"name": "lr", "set": {"finetune_diagnoses.encoder_lr": 1e-4}},
        {"name": "mix", "set": {"distilled.mix": 0.25}},
    ]
    runs, warnings = sweep_runs(config, STAGES)
    assert warnings == []
    lr, mix = runs
    plan = Plan.of(config, STAGES, runs)
    # stage 3 of the variant starts from the variant's stage 2; stage 2 from the default
    # run's stage-1 encoder, which the variant does not change
    assert plan.owner(lr.prefix, "method_diagnoses") == "sweep/lr/"
    assert plan.owner(lr.prefix, "pretrain") == ""
    # the student's teacher is the default run's
    assert plan.owner(mix.prefix, "multimodal_classification") == ""
    rows = [(run.name, m) for run, m in sweep_rows(plan, runs)]
    assert rows == [
        ("default", "method_diagnoses"),
        ("default", "method_labs"),
        ("default", "distilled"),
        ("default", "ssl_ecg_only"),
        ("default", "random_init_finetune"),
        ("lr", "method_diagnoses"),
        ("lr", "method_labs"),
        ("lr", "ssl_ecg_only"),
        ("lr", "random_init_finetune"),
        ("mix", "distilled"),
    ]


def test_a_variant_that_reaches_nothing_is_left_out_with_a_warning() -> None:
    config = _config()
    config["sweep"]["variants"] = [
        {"name": "same", "set": {"distilled.mix": config["distilled"]["mix"]}},
        {"name": "unused", "set": {"pretrain.clip.temperature": 0.1}},
    ]
    runs, warnings = sweep_runs(config, STAGES)
    assert runs == []
    assert "variant same (distilled.mix=0.5) equals the config" in warnings[0]
    assert "variant unused (pretrain.clip.temperature=0.1) reaches no stage" in warnings[1]


def test_params_are_the_resolved_settings_with_keys_sorted() -> None:
    # Snakemake compares params in written order: a reordered config must not re-train.
    config = _config()
    shuffled = json.loads(json.dumps(config))
    shuffled["distilled"] = dict(reversed(list(config["distilled"].items())))
    assert STAGES.settings(shuffled, "distilled") == STAGES.settings(config, "distilled")
    stage = STAGES.settings(config, "distilled")["stage"]
    assert list(stage) == sorted({**config["supervised"], **config["distilled"]})
    run = Run("t", {"distilled.temperature": 4.0}, "sweep")
    plan = Plan.of(config, STAGES, [run])
    assert plan.settings(run.prefix, "distilled")["stage"]["temperature"] == 4.0
    assert (
        plan.settings("", "distilled")["stage"]["temperature"] == config["distilled"]["temperature"]
    )
    assert "vicreg" not in STAGES.settings(config, "pretrain")["pretrain"]
    assert "augment" in STAGES.settings(config, "pretrain_ecg_only")


def test_resolve_writes_nested_keys_without_touching_the_config() -> None:
    config = _config()
    before = json.dumps(config, sort_keys=True)
    resolved = resolve(config, Run("v", {"pretrain.barlow_twins.lambd": 0.05}))
    assert resolved["pretrain"]["barlow_twins"]["lambd"] == 0.05
    assert resolved["pretrain"]["barlow_twins"]["eps"] == config["pretrain"]["barlow_twins"]["eps"]
    assert json.dumps(config, sort_keys=True) == before
    with pytest.raises(ValueError, match=r"pretrain\.epochs\.x: 'epochs' is not a config section"):
        resolve(config, Run("v", {"pretrain.epochs.x": 1}))


def test_a_plugin_model_is_reached_through_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "tests.model_plugin")
    stages = Stages(models(), OBJECTIVES)
    extra = next(name for name in stages.models if name not in STAGES.models)
    run = Run("r", {f"{stages.models[extra].section}.lr": 0.5}, "grid")
    assert extra in stages.retrained(_config(), run)
    assert DEFAULT_RUN.prefix == "" and run.prefix == "grid/r/"


def test_a_shared_supervised_setting_reaches_every_model_that_does_not_override_it() -> None:
    config = _config()
    every = Run("bs", {"supervised.batch_size": 16}, "sweep")
    assert STAGES.retrained(config, every) == tuple(STAGES.models)  # stage 1 untouched
    own_lr = {m for m, spec in STAGES.models.items() if "lr" in config[spec.section]}
    assert own_lr  # finetune_diagnoses states its own rate
    shared_lr = Run("lr", {"supervised.lr": 5e-4}, "sweep")
    reached = set(STAGES.retrained(config, shared_lr))
    assert reached and not reached & own_lr


DIAGNOSES = {m for m, spec in STAGES.models.items() if spec.task == "diagnoses"}


def test_a_world_reaches_every_stage_and_reads_its_own_cohort() -> None:
    config = _config()
    assert set(STAGES.retrained(config, Run("w", {"synthetic.world": "null"}, "regime"))) == set(
        STAGES.nodes
    )
    run = Run("null-f1-seed0", {"synthetic.world": "null"}, "regime")
    plan = Plan.of(config, STAGES, [run])
    assert plan.data(run.prefix) == "regime/world-null/"  # extraction, shards, splits
    assert plan.labels(run.prefix) == ""  # the config's fraction: the default file name
    assert plan.data("") == "" and plan.datasets[""] == config["synthetic"]
    assert plan.datasets["regime/world-null/"]["world"] == "null"
    # YAML's unquoted null is the same world: no cohort of its own
    config["synthetic"]["world"] = None
    same = Plan.of(config, STAGES, [Run("x", {"synthetic.world": "null"}, "regime")])
    assert same.data("regime/x/") == "" and same.retrained["regime/x/"] == ()


def test_a_label_fraction_reaches_the_models_on_diagnoses_and_those_downstream() -> None:
    retrained = _retrained({"label_fraction": 0.25})
    assert retrained >= DIAGNOSES
    assert "method_labs" in retrained  # initialised from method_diagnoses
    assert not {"pretrain", "pretrain_ecg_only"} & retrained  # stage 1 keeps every record
    run = Run("f", {"label_fraction": 0.25}, "regime")
    plan = Plan.of(_config(), STAGES, [run])
    assert plan.data(run.prefix) == "" and plan.labels(run.prefix) == "_0.25"
    assert plan.label_sets == {("", ""): 1.0, ("", "_0.25"): 0.25}
    assert plan.owner(run.prefix, "pretrain") == ""


def test_regime_cells_share_cohorts_stage_1_and_the_study_seeds_models() -> None:
    config = _config()
    config["regime"] = {
        "worlds": ["realistic", "null"],
        "label_fractions": [1.0, 0.1],
        "seeds": [0, 1],
        "models": ["signal_only"],
    }
    runs = {run.name: run for run in regime_runs(config, STAGES)}
    assert list(runs)[:2] == ["realistic-f1-seed0", "realistic-f1-seed1"] and len(runs) == 8
    plan = Plan.of(config, STAGES, [*study_runs(config, STAGES), *runs.values()])
    prefix = {name: run.prefix for name, run in runs.items()}
    assert plan.retrained[prefix["realistic-f1-seed0"]] == ()  # the default run itself
    # a cell equal to a study seed reads the study's models
    assert plan.owner(prefix["realistic-f1-seed1"], "signal_only") == "study/seed1/"
    # a label fraction re-trains the model on diagnoses, not stage 1
    assert plan.owner(prefix["realistic-f0.1-seed1"], "pretrain") == "study/seed1/"
    assert (
        plan.owner(prefix["realistic-f0.1-seed1"], "signal_only") == prefix["realistic-f0.1-seed1"]
    )
    # the null world: one cohort; stage 1 once per seed, shared across label fractions
    assert {plan.data(p) for n, p in prefix.items() if n.startswith("null")} == {
        "regime/world-null/"
    }
    for seed in (0, 1):
        owner = plan.owner(prefix[f"null-f0.1-seed{seed}"], "pretrain")
        assert owner == prefix[f"null-f1-seed{seed}"]
        assert (
            plan.owner(prefix[f"null-f0.1-seed{seed}"], "method_diagnoses")
            == prefix[f"null-f0.1-seed{seed}"]
        )
    assert plan.labels(prefix["null-f0.1-seed0"]) == "_0.1"
    assert set(plan.datasets) == {"", "regime/world-null/"}


def test_a_world_needs_a_synthetic_cohort_under_results() -> None:
    config = _config()
    run = Run("w", {"synthetic.world": "null"}, "regime")
    assert axis_errors("w", config, run) == []
    assert axis_errors("w", config, Run("same", {"synthetic.world": "realistic"})) == []
    moved = config | {"source": config["source"] | {"mimic_iv": "/data/mimic-iv"}}
    assert axis_errors("w", moved, run) == [
        "w: synthetic.world: source.mimic_iv must lie under results ('results') so that each"
        " world's cohort has a directory of its own"
    ]
    real = config | {"source": config["source"] | {"synthetic": False}}
    assert "needs source.synthetic: true" in axis_errors("w", real, run)[0]


def test_a_variant_may_set_the_world_or_label_fraction_but_no_other_cohort_key() -> None:
    config = _config()
    config["sweep"]["variants"] = [
        {"name": "few", "set": {"label_fraction": 0.5}},
        {"name": "nul", "set": {"synthetic.world": "null"}},
    ]
    validate(config, str(SCHEMA_PATH))  # a top-level key is a valid variant key
    assert variant_errors(config, SCHEMA, STAGES) == []
    config["sweep"]["variants"] = [{"name": "big", "set": {"synthetic.scale": 2.0}}]
    (error,) = variant_errors(config, SCHEMA, STAGES)
    assert error.startswith("sweep.variants[0] (big): synthetic is not a training stage's section")
