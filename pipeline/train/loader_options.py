"""How an epoch's batches are fetched: DataLoader workers, pinned memory, prefetch depth.

``train.num_workers`` resolved for the training device; none of it changes which batches a
run sees (:class:`pipeline.train.data.EpochLoader`), only where they are built.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from pipeline.stops import BadSetting

log = logging.getLogger(__name__)

# train.num_workers: auto on CUDA. 4 workers when the process has the cores (one left to the
# training process): a crop of 250 costs one process ~0.2 CPU ms per sample (bench/loader.py
# on a loaded 2-core machine), a few thousand samples/s, short of the 6,300 docs/scaling.md
# expects of a GPU at best; 4 reach it with room for cold pages and longer crops, and more
# would only hold more processes and memory. (To be confirmed on a GPU machine.)
CUDA_MAX_WORKERS = 4
CUDA_PREFETCH = 4  # batches each worker keeps ready (torch's default 2): rides out slow reads


@dataclass(frozen=True)
class LoaderOptions:
    """How an :class:`EpochLoader` fetches its batches; none of it changes which batches.

    Attributes:
        num_workers: DataLoader worker processes (0: the training process reads).
        pin_memory: collate into page-locked memory, so host-to-GPU copies run asynchronously.
        prefetch_factor: batches each worker keeps ready (None: torch's default; needs workers).
    """

    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int | None = None


IN_PROCESS = LoaderOptions()  # no workers: the training process reads (the CPU default)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity: a SLURM job's cores, not the node's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def loader_options(num_workers: int | str, device: torch.device) -> LoaderOptions:
    """``train.num_workers`` (``auto`` or an int >= 0) resolved for the training device.

    ``auto``: 0 on CPU (workers would take the cores the training threads use), on CUDA
    min(4, CPUs available - 1). Pinned memory and the prefetch depth follow the device.
    """
    if num_workers == "auto":
        cuda_workers = min(CUDA_MAX_WORKERS, max(available_cpus() - 1, 0))
        workers = cuda_workers if device.type == "cuda" else 0
    elif isinstance(num_workers, int) and not isinstance(num_workers, bool) and num_workers >= 0:
        workers = num_workers
    else:
        raise BadSetting(f"train.num_workers must be auto or an integer >= 0, got {num_workers!r}")
    cuda = device.type == "cuda"
    options = LoaderOptions(workers, cuda, CUDA_PREFETCH if cuda and workers else None)
    log.info(
        "data loading: %d worker(s)%s (train.num_workers: %s, %s)",
        *(workers, ", pinned memory" if cuda else "", num_workers, device.type),
    )
    return options
