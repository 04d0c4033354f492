"""Resume checkpoints: everything needed to continue a run bit-identically.

One file per stage (``results/checkpoints/<stage>/last.pt``), a path no rule declares, so
Snakemake never sees it. The dict carries model, optimizer, the best weights so far, the
history, and the RNG states of torch, numpy and Python taken at the end of an epoch or, for
a mid-epoch checkpoint (a signal or ``train.checkpoint_minutes``, see
:mod:`pipeline.train.interrupt`), after a step, with the batches done and the epoch's
metric sums; the data order and crops are seeded per epoch (see :mod:`pipeline.train.data`),
so a resumed run replays exactly what an uninterrupted run would have done. A ``key`` hashes the
stage's config and input file identities; a mismatching checkpoint is discarded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pipeline.io import atomic_path
from pipeline.parallel import is_main

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def checkpoint_key(config: Mapping[str, Any], inputs: Sequence[str | Path]) -> str:
    """Hash of a stage's config and the identities (path, size, mtime) of its input files."""
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for p in inputs:
        path = Path(p)
        st = path.stat()
        h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def capture_rng() -> dict[str, Any]:
    """RNG states of every generator training may touch."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (third-party code may use it)
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class CheckpointSpec:
    """Where a stage keeps its resume checkpoint, the key it must match, and how often it is
    written: every ``every`` epochs and every ``minutes`` minutes within one (0: never)."""

    path: Path
    key: str
    every: int = 1
    minutes: float = 0.0

    def load(self) -> dict[str, Any] | None:
        """The stored checkpoint if it exists and matches ``key``; otherwise None."""
        if not self.path.exists():
            return None
        try:
            # weights_only=False: the file holds numpy/python RNG states; it is our own file.
            ckpt = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as err:  # a torn or foreign file: start fresh, do not crash
            log.warning("unreadable checkpoint %s (%s); starting fresh", self.path, err)
            return None
        if ckpt.get("format") != FORMAT_VERSION or ckpt.get("key") != self.key:
            log.info("checkpoint %s is for another config or inputs; starting fresh", self.path)
            return None
        return ckpt

    def save(self, state: Mapping[str, Any]) -> None:
        """Write atomically so a kill during the write leaves the previous checkpoint.

        In data-parallel training only rank 0 writes (every rank holds the same state)."""
        if not is_main():
            return
        with atomic_path(self.path) as tmp:
            torch.save({"format": FORMAT_VERSION, "key": self.key, **state}, tmp)

    def clear(self) -> None:
        """Delete the checkpoint (after the stage's outputs are written)."""
        if not is_main():
            return
        if self.path.exists():
            self.path.unlink()
        with contextlib.suppress(OSError):  # not empty or already gone
            self.path.parent.rmdir()


class CheckpointCadence(Protocol):
    """How often a stage checkpoints (:class:`pipeline.train.engine.TrainConfig` is one)."""

    @property
    def checkpoint_every(self) -> int: ...

    @property
    def checkpoint_minutes(self) -> float: ...


def stage_checkpoint(
    checkpoint_dir: Path | None,
    config: Mapping[str, Any],
    inputs: Sequence[str | Path],
    cadence: CheckpointCadence,
) -> CheckpointSpec | None:
    """A stage's resume checkpoint, ``checkpoint_dir/last.pt``, keyed by its config and inputs,
    written as often as ``cadence`` (the ``train`` section) says (None: no resume)."""
    if checkpoint_dir is None:
        return None
    key, every = checkpoint_key(config, inputs), cadence.checkpoint_every
    return CheckpointSpec(Path(checkpoint_dir) / "last.pt", key, every, cadence.checkpoint_minutes)
