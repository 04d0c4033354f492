"""Acceptance on the tiny CI cohort: every trained head at least matches a logistic probe.

A logistic regression fitted on the training fold's frozen, crop-averaged embeddings of the
same model (scored on validation) is the floor a trained head must reach; a head that
ends near the label prior (the failure this guards against) scores far below it.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.registry import model_names

MODELS = model_names()


@pytest.mark.parametrize("model", MODELS)
def test_head_is_at_least_its_logistic_probe(tiny_run: Path, model: str) -> None:
    model_dir = tiny_run / "results/models" / model
    training = json.loads((model_dir / "model.json").read_text())["training"]
    head, probe = training["head_val_auroc"], training["probe_val_auroc"]
    assert 0.5 < probe <= 1.0 and training["probe_n_labels"] > 0
    assert head >= probe, f"{model}: head {head:.4f} < logistic probe {probe:.4f}"
    assert training["head_minus_probe_val_auroc"] == pytest.approx(head - probe)
    # The selected epoch is the best validation epoch in history.tsv (0 = warm start).
    history = pl.read_csv(model_dir / "history.tsv", separator="\t")
    best = history.filter(pl.col("epoch") == training["best_epoch"])
    assert history["val_auroc"].max() == pytest.approx(best["val_auroc"][0])
    assert history.height == training["epochs_run"] + (history["epoch"][0] == 0)
