"""Job priorities (pipeline/priorities.py) on the real registry and the default config: the
longest chains of work start first, the short jobs fill the cores at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.priorities import (
    EVALUATE,
    PROBE_ENCODER,
    PROBE_TABLE,
    RANDOM_INIT,
    REPORT,
    remaining_work,
    stage_cost,
)
from pipeline.registry import PRETRAINED, models
from tests.test_runs import STAGES, _config

MODELS = models()


def _cost(config: dict[str, Any]) -> Callable[[str], float]:
    def cost(node: str) -> float:
        settings = STAGES.settings(config, node) | {"label_fraction": config["label_fraction"]}
        return stage_cost(node, settings, MODELS)

    return cost


def _priorities(config: dict[str, Any]) -> dict[str, float]:
    return {n: remaining_work(n, MODELS, _cost(config)) for n in [*PRETRAINED, *MODELS]}


def test_longest_chains_start_first_on_the_default_config() -> None:
    prio = _priorities(_config())
    stage1 = min(prio[n] for n in PRETRAINED)
    assert all(stage1 > prio[m] for m in MODELS)  # stage 1 heads the two longest chains
    # a teacher before any other stage-2 model: its student waits on it
    assert prio["multimodal_classification"] == max(prio[m] for m in MODELS)
    # the control is ready at the start and as long as signal-only: it must not wait for
    # method_labs, a cheap head on a frozen encoder (it ended the run at 01c25b0)
    assert prio["random_init_finetune"] > prio["method_labs"]
    assert prio["method_diagnoses"] > prio["random_init_finetune"]  # method_labs waits on it
    # every training job before any probe or evaluation, which fill the cores at the end
    short = max(PROBE_ENCODER + PROBE_TABLE, EVALUATE + REPORT)
    assert min(prio.values()) > short
    assert remaining_work(RANDOM_INIT, MODELS, _cost(_config())) == PROBE_ENCODER + PROBE_TABLE


def test_chain_work_adds_up_along_the_registry() -> None:
    config = _config()
    cost, prio = _cost(config), _priorities(config)
    # stage 1 -> method_diagnoses -> method_labs -> evaluation -> report
    tail = cost("method_labs") + EVALUATE + REPORT
    assert abs(prio["method_labs"] - tail) < 0.01
    assert abs(prio["pretrain"] - cost("pretrain") - prio["method_diagnoses"]) < 0.01
    assert (
        abs(
            prio["multimodal_classification"]
            - cost("multimodal_classification")
            - prio["distilled"]
        )
        < 0.01
    )


def test_costs_follow_the_settings() -> None:
    base = _cost(_config())
    # measured at 01c25b0: an ECG-only stage-1 epoch 1.8x the tabular one
    assert base("pretrain_ecg_only") > base("pretrain")
    # a frozen block trains less (one of the default's 2), a frozen encoder (method_labs) least
    frozen = _config()
    frozen["method_regularised"] = frozen["method_regularised"] | {"freeze_blocks": 1}
    assert base("method_labs") < _cost(frozen)("method_regularised") < base("method_diagnoses")
    few = _config() | {"label_fraction": 0.1}  # diagnosis models: 10 % of the training records
    prio = _priorities(few)
    assert prio["signal_only"] < prio["multimodal_labs"]  # a labs model keeps every record
    assert _cost(few)("pretrain") == base("pretrain")  # stage 1 keeps every record
    assert prio["pretrain"] < _priorities(_config())["pretrain"]  # its chain got shorter
