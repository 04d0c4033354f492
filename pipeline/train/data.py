"""Datasets of ECG crops joined with tabular features and/or targets by study_id.

Training (Strodthoff et al. 2024; MDS-ED): one random 2.5 s crop per record per epoch.
Evaluation: the record cut into ``eval_crops`` non-overlapping crops whose sigmoid
outputs are averaged. The random crop of record i in epoch e is drawn from a generator
seeded with (seed, epoch, i), and the shuffling generator is reseeded per epoch, so a run
resumed at an epoch boundary sees exactly the batches an uninterrupted run would; one resumed
mid-epoch skips the batches already done by their indices, without reading them.

DataLoader workers (``train.num_workers``, resolved by
:func:`pipeline.train.loader_options.loader_options`): ``auto`` is 0
on CPU, where the records are memory-mapped float16 reads that cost far less than an S4 step
and worker processes would compete with torch's training threads for the same cores; on CUDA
it is up to 4 workers (one core left to the training process), with pinned memory,
persistent workers and a deeper prefetch, so that reading, cropping and collating overlap
the GPU step (``bench/loader.py`` measures the loader against the step). Workers change
where a batch is built, never which: the crop of record i in epoch e is seeded by (seed, e,
i), the epoch travels with each index (persistent workers keep their copy of the dataset),
and the shuffle is drawn in the training process, so any worker count gives the batches of 0.
"""

from __future__ import annotations

import itertools
import logging
import signal
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import polars as pl
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    default_collate,
)

from pipeline.data.preprocessing import crop_starts
from pipeline.data.tabular import TabularArrays
from pipeline.manifests import manifest_column
from pipeline.models.supervised import Batch
from pipeline.stops import BadSetting
from pipeline.train.loader_options import IN_PROCESS, LoaderOptions

log = logging.getLogger(__name__)

Mode = Literal["train", "eval"]


class RecordStore(Protocol):
    """What the datasets need from :class:`pipeline.data.ecg_store.ShardStore`."""

    def get(self, study_id: int) -> np.ndarray: ...


def open_store(shard_index: str | Path) -> RecordStore:
    """The memory-mapped store of ``shard_index`` (:class:`~pipeline.data.ecg_store.ShardStore`).

    Imported on first use: its module brings in scipy and the WFDB reader, which the
    training code needs only once it reads records.
    """
    from pipeline.data.ecg_store import ShardStore

    return ShardStore(Path(shard_index))


def read_ids(path: str | Path) -> np.ndarray:
    """study_id column of a split id file as int64."""
    df = pl.read_parquet(path, columns=["study_id"])
    if df.get_column("study_id").null_count():
        raise ValueError(f"{path}: null study_id")
    ids = df.get_column("study_id").to_numpy().astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate study_id values")
    return ids


def read_names(path: str | Path, column: str) -> list[str]:
    """A name column of a TSV manifest (label codes, lab target names), in file order."""
    return manifest_column(path, column)


def read_targets(path: str | Path, ids: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    """Target matrix (N, K) float32 for ``ids`` in order; null -> NaN (masked in the loss)."""
    df = pl.read_parquet(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: target columns missing: {missing[:5]}")
    table_ids = df.get_column("study_id").to_numpy().astype(np.int64)
    order = np.argsort(table_ids, kind="stable")
    pos = np.searchsorted(table_ids[order], ids)
    pos = np.clip(pos, 0, max(len(table_ids) - 1, 0))
    found = table_ids[order][pos] == ids
    if not found.all():
        raise ValueError(f"{path}: {int((~found).sum())} of {len(ids)} records have no row")
    values = df.select([pl.col(c).cast(pl.Float32) for c in columns]).to_numpy()
    return np.asarray(values[order[pos]], dtype=np.float32)  # (N, K)


class ECGDataset(Dataset[dict[str, np.ndarray]]):
    """Crops of records with optional tabular inputs and targets.

    Items are dicts: ``ecg`` (12, crop) in train mode or (eval_crops, 12, crop) in eval
    mode, plus ``x_cont``, ``x_mask``, ``x_cat`` when tabular is given, ``target`` (K,)
    when targets are given, ``teacher`` (K,) when teacher logits are given (distillation),
    and with ``second_crop`` (train mode) ``ecg_view``: a second, independently placed crop
    of the same record (ECG-only self-supervision). The first crop is drawn first, so it is
    the same with and without the second.
    """

    def __init__(
        self,
        store: RecordStore,
        ids: np.ndarray,
        *,
        crop_samples: int,
        mode: Mode = "train",
        eval_crops: int = 4,
        seed: int = 0,
        tabular: TabularArrays | None = None,
        targets: np.ndarray | None = None,
        teacher: np.ndarray | None = None,
        second_crop: bool = False,
    ) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if second_crop and mode != "train":
            raise ValueError("second_crop needs mode 'train' (random crops)")
        n = len(ids)
        if tabular is not None and len(tabular.x_cont) != n:
            raise ValueError("tabular rows do not match ids")
        if targets is not None and len(targets) != n:
            raise ValueError("target rows do not match ids")
        if teacher is not None and len(teacher) != n:
            raise ValueError("teacher rows do not match ids")
        self.store = store
        self.ids = np.asarray(ids, dtype=np.int64)
        self.crop = crop_samples
        self.mode = mode
        self.eval_crops = eval_crops
        self.seed = seed
        self.epoch = 0
        self.tabular = tabular
        self.targets = targets
        self.teacher = teacher
        self.second_crop = second_crop

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        x = self.store.get(int(self.ids[i]))  # (12, L)
        length = x.shape[-1]
        if self.mode == "train":
            if length < self.crop:
                raise ValueError(f"record #{i}: {length} samples < crop {self.crop}")
            rng = np.random.default_rng((self.seed, self.epoch, i))
            starts = rng.integers(0, length - self.crop + 1, size=2 if self.second_crop else 1)
            crops = [np.ascontiguousarray(x[:, s : s + self.crop], np.float32) for s in starts]
            item = dict(zip(("ecg", "ecg_view"), crops, strict=False))
        else:
            starts = crop_starts(length, self.crop, self.eval_crops)
            item = {"ecg": np.stack([x[:, s : s + self.crop] for s in starts]).astype(np.float32)}
        if self.tabular is not None:
            item["x_cont"] = self.tabular.x_cont[i]
            item["x_mask"] = self.tabular.x_mask[i]
            item["x_cat"] = self.tabular.x_cat[i]
        if self.targets is not None:
            item["target"] = self.targets[i]
        if self.teacher is not None:
            item["teacher"] = self.teacher[i]
        return item


class EpochDataset(Protocol):
    """What :class:`EpochLoader` needs: a map-style dataset told the epoch before each pass."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> dict[str, np.ndarray]: ...

    def set_epoch(self, epoch: int) -> None: ...


class _From:
    """The batches of ``sampler`` from batch ``start`` on (index lists only: no data is read)."""

    def __init__(self, sampler: BatchSampler | _Part, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)


class _AtEpoch(Dataset[dict[str, np.ndarray]]):
    """``[(epoch, i)]``: item i of ``epoch``, in whichever process reads it.

    Persistent workers keep the copy of the dataset they started with, so the epoch (which
    seeds the crops) travels with each index instead of through the main process's
    ``set_epoch``.
    """

    def __init__(self, dataset: EpochDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        epoch, i = key
        self.dataset.set_epoch(epoch)  # an attribute: cheaper than checking
        return self.dataset[i]

    def __getitems__(
        self, keys: list[tuple[int, int]]
    ) -> list[dict[str, np.ndarray]] | dict[str, np.ndarray]:
        """A batch at once: the items, or the batch the dataset's ``rows`` stacks itself
        where it has one (cached embeddings: one fancy index, not a call and a stack per item)."""
        rows = getattr(self.dataset, "rows", None)
        if rows is None:
            return [self[key] for key in keys]
        self.dataset.set_epoch(keys[0][0])  # a batch lies within one pass
        return dict(rows(np.fromiter((i for _, i in keys), np.int64, len(keys))))


def _collate(data: list[dict[str, np.ndarray]] | dict[str, np.ndarray]) -> Batch:
    if isinstance(data, dict):  # stacked by ``rows``: the tensors default_collate would stack
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}
    batch: Batch = default_collate(data)
    return batch


def _ignore_stop_signals(worker_id: int) -> None:
    """Workers leave SIGTERM / SIGINT to the training process.

    SLURM and a terminal signal the whole process group; a worker killed by one would make
    the DataLoader raise in the training process before it could write its resume
    checkpoint (:mod:`pipeline.train.interrupt`). Workers exit with their parent anyway.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def _keyed(
    generator: torch.Generator, epoch: int, batches: Iterable[list[int]]
) -> Iterator[list[tuple[int, int]]]:
    """``batches`` as (epoch, index) keys; nothing is drawn before the first batch is asked
    for (a DataLoader with workers calls ``iter`` on its sampler twice, using the second)."""
    # Until the DataLoader got a generator of its own, it drew its workers' base seed from
    # the shuffling generator just before the permutation; the same draw keeps the batch
    # order (and so the weights) of every run made before.
    torch.empty((), dtype=torch.int64).random_(generator=generator)
    for batch in batches:
        yield [(epoch, i) for i in batch]


class _Pass:
    """The batch sampler of an :class:`EpochLoader`'s current pass, read when it starts.

    It refers to its loader weakly: no cycle, so a dropped loader shuts its workers down at
    once (garbage left for the cycle collector would be copied into the next loader's
    forked workers and collected there).
    """

    def __init__(self, loader: EpochLoader) -> None:
        self._loader = weakref.ref(loader)

    @property
    def loader(self) -> EpochLoader:
        loader = self._loader()
        assert loader is not None, "the EpochLoader of this sampler is gone"
        return loader

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        loader = self.loader  # not held by the generator: that would be a cycle again
        batches = _From(loader._rank_batches(), loader.start_batch)
        return _keyed(loader._generator, loader.epoch, batches)

    def __len__(self) -> int:
        return len(self.loader)


class _Part:
    """Part ``rank`` of ``world`` equal parts of every batch of ``sampler`` (data-parallel)."""

    def __init__(self, sampler: BatchSampler, rank: int, world: int) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.sampler:
            part = len(batch) // self.world
            yield batch[self.rank * part : (self.rank + 1) * part]

    def __len__(self) -> int:
        return len(self.sampler)


class EpochLoader:
    """A DataLoader whose shuffling and crops are a pure function of (seed, epoch).

    ``options`` (:func:`~pipeline.train.loader_options.loader_options`) choose workers,
    pinning and prefetch; the batches are the same for every choice. With workers they
    persist across passes (one DataLoader per EpochLoader), and their own seeds come from
    ``seed``.
    Sharded (:meth:`shard`), it yields one rank's part of each of the same batches.
    """

    def __init__(
        self,
        dataset: EpochDataset,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        options: LoaderOptions = IN_PROCESS,
    ) -> None:
        self.dataset = dataset
        self.batch_size = max(1, min(batch_size, len(dataset)))
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.options = options
        self._generator = torch.Generator()
        self.epoch = 0
        self.start_batch = 0
        self.rank, self.world = 0, 1
        self.set_epoch(0)
        workers = options.num_workers
        self._loader: DataLoader[dict[str, np.ndarray]] = DataLoader(
            _AtEpoch(dataset),
            batch_sampler=_Pass(self),  # yields (epoch, i) keys
            collate_fn=_collate,
            num_workers=workers,
            pin_memory=options.pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=options.prefetch_factor,
            # workers' Python / numpy / torch seeds (nothing of ours draws from them)
            generator=torch.Generator().manual_seed(seed),
            worker_init_fn=_ignore_stop_signals if workers else None,
        )

    def shard(self, rank: int, world: int) -> None:
        """Yield part ``rank`` of ``world`` equal parts of each batch (data-parallel rank
        ``rank``): the ranks together see exactly the batches of the unsharded loader."""
        if not self.drop_last:
            raise ValueError("only a loader of full batches (drop_last) splits into equal parts")
        if self.batch_size % world:
            raise BadSetting(
                f"batch size {self.batch_size} does not split into {world} equal parts "
                f"(train.devices {world}; the batch is capped at the {len(self.dataset)} "
                "records): use a multiple of train.devices"
            )
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int, start_batch: int = 0) -> int:
        """Reseed for ``epoch``; the next pass starts at batch ``start_batch`` (a resume).

        Returns the number of batches of the whole epoch.
        """
        self.dataset.set_epoch(epoch)
        self.epoch = epoch
        state = np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)
        self._generator.manual_seed(int(state[0] >> np.uint64(1)))
        self.start_batch = start_batch
        return len(self._batches())

    def _batches(self) -> BatchSampler:
        # What DataLoader(shuffle=..., generator=...) builds itself, made explicit so a pass
        # can start mid-epoch with the same permutation (drawn from the same generator).
        data: Sequence[object] = self.dataset  # type: ignore[assignment]  # sized by protocol
        sampler: Iterable[int] = (
            RandomSampler(data, generator=self._generator)
            if self.shuffle
            else SequentialSampler(data)
        )
        return BatchSampler(sampler, self.batch_size, self.drop_last)

    def _rank_batches(self) -> BatchSampler | _Part:
        batches = self._batches()
        return batches if self.world == 1 else _Part(batches, self.rank, self.world)

    def __len__(self) -> int:
        """Batches left in this pass."""
        return len(_From(self._rank_batches(), self.start_batch))

    def __iter__(self) -> Iterator[Batch]:
        # a generator: it holds this loader (its sampler only refers to it weakly) while
        # the pass runs, also in ``for batch in EpochLoader(...)``
        yield from self._loader


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
