"""random_init_finetune (issue 22): the method's stage-2 recipe on an untrained encoder.

The control must read exactly method_diagnoses' settings (so a sweep of
finetune_diagnoses.* reaches it), and differ from it only in where the encoder starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from train_fixtures import build_world, model_cfg, runtime, stage_cfg

from pipeline.models import build_ecg_encoder
from pipeline.registry import spec
from pipeline.runs import Run
from pipeline.train.model import build_supervised, param_groups
from pipeline.train.supervised import train_supervised
from tests.test_runs import STAGES, _config

CONTROL = "random_init_finetune"


def test_the_control_reads_stage_2s_settings_and_starts_untrained() -> None:
    config = _config()
    assert STAGES.settings(config, CONTROL) == STAGES.settings(config, "method_diagnoses")
    control, method = spec(CONTROL), spec("method_diagnoses")
    assert control.section == method.section == "finetune_diagnoses"
    assert control.init is None and method.init == "pretrain"
    # every stage-2 key reaches it; nothing of stage 1 does
    for key, value in (("freeze_blocks", 1), ("encoder_lr", 3e-4), ("lr", 1e-3)):
        run = Run("r", {f"finetune_diagnoses.{key}": value}, "grid")
        assert CONTROL in STAGES.retrained(config, run), key
    run = Run("r", {"pretrain.epochs": 30}, "grid")
    assert CONTROL not in STAGES.retrained(config, run)


def test_freezing_and_rates_apply_to_an_untrained_encoder() -> None:
    cfg = stage_cfg(freeze_blocks=1, encoder_lr=1e-4, lr=3e-3)
    model = build_supervised(spec(CONTROL), cfg, model_cfg(), 3, None, None)
    frozen = [n for n, p in model.encoder.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("input_proj.", "blocks.0.")) for n in frozen)
    assert all(p.requires_grad for p in model.encoder.blocks[1].parameters())
    rates = {g["name"]: g["lr"] for g in param_groups(model, cfg)}
    assert rates == {"head": 3e-3, "encoder": 1e-4}
    # the baselines' section (no freeze_blocks, no encoder_lr): everything at one rate
    baseline = build_supervised(spec("signal_only"), stage_cfg(), model_cfg(), 3, None, None)
    assert all(p.requires_grad for p in baseline.parameters())
    assert [g["name"] for g in param_groups(baseline, stage_cfg())] == ["all"]


def test_the_control_trains_with_its_first_block_left_at_the_random_init(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    cfg = stage_cfg(epochs=2, freeze_blocks=1, encoder_lr=1e-2)
    res = train_supervised(
        CONTROL,
        world.supervised_inputs("diagnoses"),
        tmp_path / CONTROL,
        tmp_path / f"{CONTROL}.npz",
        cfg,
        model_cfg(),
        runtime(),
    )
    assert 0.0 <= res.test_auroc <= 1.0
    torch.manual_seed(cfg.seed)  # the stage seeds torch before it builds the model
    init = build_ecg_encoder(model_cfg()["ecg_encoder"]).state_dict()
    after = load_file(str(tmp_path / CONTROL / "model.safetensors"))
    frozen = [k for k in init if k.startswith(("input_proj.", "blocks.0."))]
    trained = [k for k in init if k.startswith("blocks.1.") and init[k].is_floating_point()]
    assert frozen and trained
    for k in frozen:
        assert init[k].equal(after[f"encoder.{k}"]), k
    assert any(not init[k].equal(after[f"encoder.{k}"]) for k in trained)
    meta = json.loads((tmp_path / CONTROL / "model.json").read_text())
    assert meta["spec"]["init"] is None and meta["config"]["freeze_blocks"] == 1


def test_the_tiny_run_trains_and_reports_the_control_with_the_methods_settings(
    tiny_run: Path,
) -> None:
    models = tiny_run / "results/models"
    control = json.loads((models / CONTROL / "model.json").read_text())
    method = json.loads((models / "method_diagnoses" / "model.json").read_text())
    assert control["config"] == method["config"]  # stage 2's recipe, all of it
    assert control["spec"]["init"] is None and method["spec"]["init"] == "pretrain"
    table = json.loads((tiny_run / "results/table1.json").read_text())
    title = spec(CONTROL).row.title if spec(CONTROL).row else None
    row = next(r for r in table["rows"] if r["approach"] == title)
    assert 0.0 <= row["diagnoses"]["auroc"] <= 1.0
    assert f"{CONTROL}_minus_signal_only" in table["comparisons"]
