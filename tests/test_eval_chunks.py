"""Evaluation passes on a CPU run a few crops at a time (issue 24, item 4).

An S4 layer's spectra leave the cache past ~64 x 64 crops x channels, so validation, test
predictions, the embedding caches and the probes embed ``CPU_ROWS_X_WIDTH // d_model``
crops per forward pass (the default encoder 64, the reference size 8; one thread, twice as
fast at the default size). Rows are independent in evaluation, so the outputs are those of
the whole batch, bit for bit, here on the tiny world's real shards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_fixtures import CROP, build_world, model_cfg

import pipeline.train.predict as predict
from pipeline.models import build_ecg_encoder
from pipeline.train.data import ECGDataset, EpochLoader, open_store, read_ids
from pipeline.train.embed import embed_crops
from pipeline.train.predict import eval_chunk, predict_probs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("chunks"), n_train=8, n_val=20, n_test=4)


def test_chunk_follows_the_encoder_width_on_cpu_only() -> None:
    cfg = model_cfg()["ecg_encoder"]
    sizes = {w: build_ecg_encoder(cfg | {"d_model": w, "n_layers": 1}) for w in (64, 512)}
    assert eval_chunk(sizes[64], torch.device("cpu")) == 64
    assert eval_chunk(sizes[512], torch.device("cpu")) == 8
    assert eval_chunk(torch.nn.Linear(3, 3), torch.device("cpu")) == 64  # no S4: as default
    assert eval_chunk(sizes[64], torch.device("cuda")) is None  # a GPU takes the whole batch


def test_chunked_passes_equal_the_whole_batch(world, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    encoder = build_ecg_encoder(model_cfg()["ecg_encoder"]).eval()  # d_model 16
    head = torch.nn.Linear(16, 3)
    store, ids = open_store(world.shard_index), read_ids(world.ids["val"])

    def passes() -> tuple[np.ndarray, np.ndarray]:
        emb = embed_crops(encoder, store, ids, CROP, 4, batch_size=8)  # 32 crops a batch
        ds = ECGDataset(store, ids, crop_samples=CROP, mode="eval", eval_crops=4)
        loader = EpochLoader(ds, 8, shuffle=False, drop_last=False)
        prob = predict_probs(
            torch.nn.Sequential(encoder, head),
            loader,
            lambda m, b: m(b["ecg"]),
            torch.device("cpu"),
        )
        return emb, prob

    monkeypatch.setattr(predict, "CPU_ROWS_X_WIDTH", 16 * 5)  # 5 crops a pass: uneven parts
    chunked = passes()
    monkeypatch.setattr(predict, "CPU_ROWS_X_WIDTH", 10**9)  # the whole batch at once
    whole = passes()
    assert chunked[0].shape == (20, 4, 16) and chunked[1].shape == (20, 3)
    assert np.array_equal(chunked[0], whole[0])
    assert np.array_equal(chunked[1], whole[1])
