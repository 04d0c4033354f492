"""DataLoader workers change where a batch is built, never which (issue 24, item 3).

On the tiny training world: stage 1's loader (crops, tabular inputs, the ECG-only second
crop) and a supervised stage's (crops, tabular inputs, targets) give exactly the batches of
0 workers with 2 persistent workers, over several epochs and a mid-epoch resume; 0 workers
still give the batch order of the loader before workers were seeded apart; ``auto``
resolves to 0 on CPU and to a pinned, prefetching pool on CUDA.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import yaml
from snakemake.utils import validate
from torch.utils.data import DataLoader
from train_fixtures import LABELS, build_world, stage_cfg, train_cfg

from pipeline.data.tabular import tabular_inputs
from pipeline.models.supervised import Batch
from pipeline.stops import BadSetting
from pipeline.train.augment import EcgAugmentConfig
from pipeline.train.data import ECGDataset, EpochLoader, open_store, read_ids, read_targets
from pipeline.train.embed import CachedEmbeddings
from pipeline.train.loader_options import (
    CUDA_PREFETCH,
    LoaderOptions,
    available_cpus,
    loader_options,
)
from pipeline.train.pretrain import _loader as pretrain_loader
from pipeline.train.stage import StageData
from pipeline.train.supervised_data import SupervisedData
from tests.snakemake_helpers import REPO

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return build_world(tmp_path_factory.mktemp("loader"), n_train=40, n_val=12, n_test=4)


@pytest.fixture(scope="module")
def stage(world) -> StageData:
    ids = {part: read_ids(path) for part, path in world.ids.items()}
    return StageData(CPU, open_store(world.shard_index), ids)


@pytest.fixture(scope="module")
def tab(world, stage):
    parts = {p: stage.ids[p] for p in ("train", "val")}
    return tabular_inputs(world.features, world.feature_manifest, "all", parts)[1]


def _passes(loader: EpochLoader) -> Iterator[tuple[str, Batch]]:
    """Epochs 0-2 whole, then epoch 3 resumed at its second batch (as after a kill)."""
    for epoch in range(3):
        loader.set_epoch(epoch)
        for k, batch in enumerate(loader):
            yield f"epoch {epoch} batch {k}", batch
    loader.set_epoch(3, start_batch=1)
    for k, batch in enumerate(loader, start=1):
        yield f"epoch 3 batch {k}", batch


def _assert_same_batches(make, workers: int | str) -> int:
    """Every tensor of every batch of ``make(0)`` and ``make(workers)`` equal; batches seen."""
    want = list(_passes(make(0)))
    got = list(_passes(make(workers)))
    assert [name for name, _ in got] == [name for name, _ in want]
    for (name, a), (_, b) in zip(want, got, strict=True):
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs"
    return len(want)


def test_stage1_workers_give_the_batches_of_no_workers(stage, tab) -> None:
    def make(workers: int | str) -> EpochLoader:
        cfg = train_cfg(num_workers=workers)
        loader = pretrain_loader(stage, "train", 5, tab, cfg, 8, EcgAugmentConfig())
        assert loader.options.num_workers == (0 if workers == "auto" else workers)
        return loader

    assert _assert_same_batches(make, 2) == 3 * 5 + 4
    assert _assert_same_batches(make, "auto") == 3 * 5 + 4  # auto: 0 workers on CPU
    first = next(iter(make(2)))
    assert {"ecg", "ecg_view", "x_cont", "x_mask", "x_cat"} <= first.keys()
    assert first["ecg"].shape == (8, 12, train_cfg().crop_samples)
    assert not torch.equal(first["ecg"], first["ecg_view"])


def test_supervised_workers_give_the_batches_of_no_workers(world, stage, tab) -> None:
    targets = {p: read_targets(world.labels, stage.ids[p], LABELS) for p in ("train", "val")}

    def data(workers: int | str) -> SupervisedData:
        cfg = stage_cfg(batch_size=8, seed=2)
        return SupervisedData(stage, tab, targets, None, cfg, train_cfg(num_workers=workers))

    _assert_same_batches(lambda w: data(w).loader("train", "train", shuffle=True), 2)
    # evaluation loaders too (no shuffle, every crop of each record)
    plain, pool = (list(data(w).loader("val", "eval", shuffle=False)) for w in (0, 2))
    assert len(plain) == len(pool) == 2
    for a, b in zip(plain, pool, strict=True):
        assert a.keys() == b.keys() == {"ecg", "x_cont", "x_mask", "x_cat", "target"}
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_workers_keep_the_batch_order_of_earlier_runs(world, stage) -> None:
    """The loader as it was (a DataLoader drawing its base seed from the shuffling
    generator, dataset told the epoch): same batches, so earlier runs' weights still hold."""
    ds = ECGDataset(stage.store, stage.ids["train"], crop_samples=50, seed=7)
    loader = EpochLoader(ds, 8, shuffle=True, drop_last=True, seed=7)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        ours = [b["ecg"] for b in loader]
        loader.set_epoch(epoch)
        before = DataLoader(ds, batch_sampler=loader._batches(), generator=loader._generator)
        assert all(torch.equal(a, b["ecg"]) for a, b in zip(ours, before, strict=True))


def test_auto_is_no_workers_on_cpu_and_a_pinned_pool_on_cuda() -> None:
    assert loader_options("auto", CPU) == LoaderOptions(0, pin_memory=False)
    workers = min(4, available_cpus() - 1)
    want = LoaderOptions(workers, True, CUDA_PREFETCH if workers else None)
    assert loader_options("auto", torch.device("cuda")) == want
    assert loader_options(3, CPU) == LoaderOptions(3)
    assert loader_options(0, torch.device("cuda")) == LoaderOptions(0, pin_memory=True)
    for bad in ("4", -1, True, "all"):
        with pytest.raises(BadSetting, match=r"train\.num_workers must be auto or an integer"):
            loader_options(bad, CPU)  # type: ignore[arg-type]


def test_config_takes_auto_or_a_worker_count() -> None:
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert config["train"]["num_workers"] == "auto"
    for ok in ("auto", 0, 2):
        config["train"]["num_workers"] = ok
        validate(config, str(schema))
    config["train"]["num_workers"] = "many"
    with pytest.raises(Exception, match=r"num_workers|many"):
        validate(config, str(schema))


def test_workers_outlive_a_stop_signal_to_the_process_group(stage) -> None:
    """SIGTERM reaches the workers too (SLURM, a terminal); the training process must still
    get its batches up to the step where it checkpoints (pipeline.train.interrupt)."""
    ds = ECGDataset(stage.store, stage.ids["train"], crop_samples=50, seed=1)
    want = [b["ecg"] for b in EpochLoader(ds, 4, shuffle=True, drop_last=True, seed=1)]
    loader = EpochLoader(
        ds, 4, shuffle=True, drop_last=True, seed=1, options=LoaderOptions(num_workers=2)
    )
    got, batches = [], iter(loader)
    got.append(next(batches)["ecg"])
    workers = loader._loader._iterator._workers  # type: ignore[union-attr]  # torch's pool
    for w in workers:
        os.kill(w.pid, signal.SIGTERM)
        os.kill(w.pid, signal.SIGINT)
    got += [b["ecg"] for b in batches]
    assert all(w.is_alive() for w in workers)
    assert len(got) == len(want) == 10
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_a_dropped_loader_stops_its_workers_at_once(stage) -> None:
    """No reference cycle keeps a loader (and its persistent workers) for the cycle
    collector, which could run in a later loader's forked worker instead."""
    ds = ECGDataset(stage.store, stage.ids["train"], crop_samples=50)
    loader = EpochLoader(ds, 4, shuffle=True, drop_last=True, options=LoaderOptions(2))
    batches = iter(loader)
    next(batches)  # mid-epoch, as when training stops early
    workers = loader._loader._iterator._workers  # type: ignore[union-attr]  # torch's pool
    gc.disable()
    try:
        del batches, loader
        for w in workers:
            w.join(timeout=10)
        assert not any(w.is_alive() for w in workers)
    finally:
        gc.enable()


@pytest.mark.parametrize("train", [True, False])
def test_cached_embeddings_stack_the_batches_of_per_item_collation(train: bool) -> None:
    """A head on cached embeddings draws each batch with one fancy index (``rows``), not a
    call and a stack per item: the same tensors as collating the items one by one, with and
    without workers (the head fits of issue 24 are unchanged, only ~10x cheaper to feed)."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 4, 6)).astype(np.float32)  # (N, K, D)
    targets = np.where(rng.random((30, 3)) < 0.2, np.nan, rng.random((30, 3)) < 0.5)
    ds = CachedEmbeddings(emb, targets, train=train)
    for workers in (0, 2):
        options = LoaderOptions(workers, False, 2 if workers else None)
        loader = EpochLoader(ds, 16, shuffle=train, drop_last=train, seed=3, options=options)
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            ours = list(loader)
            loader.set_epoch(epoch)  # as the loader was: one item at a time, then collated
            per_item = DataLoader(ds, batch_sampler=loader._batches(), generator=loader._generator)
            assert len(ours) == len(per_item) == (7 if train else 2)
            for got, want in zip(ours, per_item, strict=True):
                assert got.keys() == want.keys() == {"emb", "target"}
                for key in got:
                    assert got[key].dtype == want[key].dtype == torch.float32
                    assert torch.equal(got[key].nan_to_num(-1), want[key].nan_to_num(-1)), key
