"""Process runtime of a training stage: threads, seeds, malloc behaviour and the device."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from pipeline.models.ops import reuse_freed_memory
from pipeline.parallel import current
from pipeline.stops import BadSetting
from pipeline.train import distributed
from pipeline.train.engine import TrainConfig


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global RNG some libraries use)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    """``train.device`` (auto | cpu | cuda) as a torch device; a clear error without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadSetting(f"train.device is 'cuda' but torch {torch.__version__} sees no CUDA")
    if name not in ("cpu", "cuda"):
        raise BadSetting(f"train.device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def setup_runtime(cfg: TrainConfig, threads: int | None, seed: int) -> torch.device:
    """Thread count (config wins over the rule's threads), seeding, malloc and the device."""
    # Every activation of a step is a block above glibc's mmap threshold: without this, each
    # step page-faults all of them afresh (a 20 % slower CPU step at the default size,
    # bench/s4.py --malloc; seconds per step at L 5000). Costs only the peak staying resident.
    reuse_freed_memory()
    n = distributed.threads_per_rank(cfg.num_threads if cfg.num_threads > 0 else (threads or 0))
    if n > 0:
        torch.set_num_threads(n)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    seed_everything(seed)
    ranks = current()
    return select_device(cfg.device) if ranks is None else ranks.device
