"""Stage 1 with each objective: trains, logs its components, records itself; CLIP's scale.

The Barlow Twins default is covered number for number by the unchanged test_pretrain.py and
test_engine.py; here every objective runs through the public :func:`pretrain` on the tiny
world, and CLIP's learnable logit scale is checked to be optimised without weight decay and
to survive a resume.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file
from snakemake.utils import validate
from train_fixtures import build_world, model_cfg, pretrain_cfg, runtime

from pipeline.config_checks import config_errors
from pipeline.losses import OBJECTIVE_NAMES, build_objective
from pipeline.models import build_ecg_encoder, build_tabular_encoder
from pipeline.train.pretrain import JointEmbedding, PretrainConfig, param_groups, pretrain
from tests.snakemake_helpers import REPO

COMPONENTS = {
    "barlow_twins": ("on_diag", "off_diag"),
    "vicreg": ("invariance", "variance", "covariance"),
    "clip": ("a_to_b", "b_to_a", "scale"),
}
CLIP_INIT = math.log(1 / 0.07)
# The module, not the function the package re-exports under the same name.
stage_module = importlib.import_module("pipeline.train.stage")


class Killed(Exception):
    """Stands in for SIGKILL after an epoch's checkpoint was written."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("objectives"))


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One 3-epoch pre-training per objective, with the params MLflow was given."""
    root = tmp_path_factory.mktemp("runs")
    out: dict[str, Any] = {}
    for name in OBJECTIVE_NAMES:
        logged: dict[str, Any] = {}
        with _capture_params(logged):
            result = pretrain(
                world.pretrain_inputs(),
                root / name,
                pretrain_cfg(objective=name),
                model_cfg(),
                runtime(),
            )
        out[name] = (root / name, result, logged)
    return out


@contextmanager
def _capture_params(logged: dict[str, Any]) -> Iterator[None]:
    """Record the params :func:`pretrain` hands to MLflow (tracking is off in tests)."""
    real = stage_module.stage_run

    def spy(uri: str, experiment: str, results: Path, stage: str, params: Any) -> Any:
        logged.update(params)
        return real(uri, experiment, results, stage, params)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stage_module, "stage_run", spy)
        yield


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_each_objective_trains_and_writes_its_outputs(runs, name: str) -> None:
    out, result, _ = runs[name]
    assert sorted(p.name for p in out.iterdir()) == [
        "encoder.safetensors",
        "history.tsv",
        "model.json",
        "probe.json",
    ]
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    assert all(math.isfinite(h["val_loss"]) for h in result.history)
    meta = json.loads((out / "model.json").read_text())
    encoder = build_ecg_encoder(meta["ecg_encoder"])
    encoder.load_state_dict(load_file(str(out / "encoder.safetensors")))  # strict


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_history_logs_the_objective_components(runs, name: str) -> None:
    out, result, _ = runs[name]
    header = (out / "history.tsv").read_text().splitlines()[0].split("\t")
    for component in COMPONENTS[name]:
        assert component in header and f"val_{component}" in header
        assert all(component in h and f"val_{component}" in h for h in result.history)
    others = {c for n, cs in COMPONENTS.items() if n != name for c in cs}
    assert not others & set(header)


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_objective_and_kwargs_are_recorded(runs, name: str) -> None:
    out, _, logged = runs[name]
    cfg = pretrain_cfg(objective=name)
    meta = json.loads((out / "model.json").read_text())
    for record in (meta["pretrain"], logged["pretrain"]):  # model.json and MLflow params
        assert record["objective"] == name
        assert record["objective_kwargs"] == getattr(cfg, name)
        assert not set(OBJECTIVE_NAMES) & set(record)  # the other blocks are not recorded
    if name == "clip":
        assert set(meta["objective_state"]) == {"loss_fn.logit_scale"}
    else:
        assert meta["objective_state"] == {}


def test_clip_logit_scale_is_trained(runs) -> None:
    out, _, _ = runs["clip"]
    learned = json.loads((out / "model.json").read_text())["objective_state"]
    assert learned["loss_fn.logit_scale"] != pytest.approx(CLIP_INIT, abs=1e-6)


def _joint(objective_name: str, **kwargs: Any) -> JointEmbedding:
    cfg = model_cfg()
    return JointEmbedding(
        build_ecg_encoder(cfg["ecg_encoder"]),
        build_tabular_encoder(cfg["tabular_encoder"], 3, [2]),
        8,
        16,
        build_objective(objective_name, **kwargs),
    )


def test_clip_logit_scale_is_optimised_without_weight_decay() -> None:
    model = _joint("clip")
    scale = model.objective.loss_fn.logit_scale
    optimizer = torch.optim.AdamW(param_groups(model), lr=0.1, weight_decay=0.5)
    decayed, own = optimizer.param_groups
    assert own["weight_decay"] == 0.0 and decayed["weight_decay"] == 0.5
    assert [id(p) for p in own["params"]] == [id(scale)]
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters()
    )
    # With zero gradients only weight decay moves a parameter: the scale must not move.
    weight = model.ecg_projector.net[0].weight
    before_scale, before_weight = scale.detach().clone(), weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert scale.detach().equal(before_scale)
    assert not weight.detach().equal(before_weight)


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg"])
def test_objectives_without_parameters_keep_one_group(name: str) -> None:
    groups = param_groups(_joint(name))
    assert len(groups) == 1 and "weight_decay" not in groups[0]


def test_fixed_clip_temperature_is_a_buffer_not_a_parameter() -> None:
    model = _joint("clip", learnable_temperature=False)
    assert len(param_groups(model)) == 1
    assert "objective.loss_fn.logit_scale" in model.state_dict()


def test_clip_resume_restores_the_logit_scale(world, tmp_path: Path) -> None:
    args = (pretrain_cfg(objective="clip"), model_cfg())
    inputs = world.pretrain_inputs()
    full = pretrain(inputs, tmp_path / "full", *args, runtime())

    def kill_after_2(epoch: int, record: dict[str, float]) -> None:
        if epoch == 2:
            raise Killed

    ckpt = tmp_path / "ck"
    with pytest.raises(Killed):
        pretrain(
            inputs, tmp_path / "out", *args, runtime(checkpoint_dir=ckpt, on_epoch_end=kill_after_2)
        )
    saved = torch.load(ckpt / "last.pt", weights_only=False)
    assert "objective.loss_fn.logit_scale" in saved["model"]
    resumed = pretrain(inputs, tmp_path / "out", *args, runtime(checkpoint_dir=ckpt))
    assert resumed.resumed_at == 2
    assert [h["scale"] for h in resumed.history] == [h["scale"] for h in full.history]
    assert resumed.history == full.history
    meta = [json.loads((tmp_path / d / "model.json").read_text()) for d in ("full", "out")]
    assert meta[0]["objective_state"] == meta[1]["objective_state"]


def test_bad_objective_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"pretrain\.objective: unknown 'simclr'"):
        PretrainConfig(objective="simclr")
    with pytest.raises(ValueError, match=r"pretrain.vicreg: unknown key\(s\) \['lambd'\]"):
        PretrainConfig(vicreg={"lambd": 1.0})
    partial = PretrainConfig(objective="vicreg", vicreg={"inv_weight": 5.0})
    assert partial.objective_kwargs() == {
        "inv_weight": 5.0,
        "var_weight": 25.0,
        "cov_weight": 1.0,
        "gamma": 1.0,
        "eps": 1e-4,
    }


def test_clip_temperature_above_max_scale_stops_the_dag() -> None:
    config = yaml.safe_load("pretrain: {clip: {temperature: 0.001}}")
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    assert any(e.startswith("pretrain.clip.temperature: 0.001") for e in config_errors(config))
