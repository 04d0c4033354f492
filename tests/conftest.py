"""Suite-wide settings: headless plotting and a deterministic, small torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where Snakefile and config.yaml live)."""
    return REPO


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG once on ``.test/config.yaml``, shared by every test that reads a
    finished run (workflow, README commands, fault cases); tests must not modify it."""
    from tests.snakemake_helpers import snakemake

    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir, REPO / ".test/config.yaml", "--cores", "2")
    return workdir


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory whose results/synthetic holds the tiny cohort (generated once):
    the three PhysioNet dataset roots, as a real download is laid out."""
    from tests.snakemake_helpers import snakemake

    workdir = tmp_path_factory.mktemp("tiny_synthetic")
    snakemake(workdir, REPO / ".test/config.yaml", "--cores", "1", "results/synthetic/cohort.json")
    return workdir


#: Device the S4 / Cauchy kernel tests run on (tests/test_s4*.py, tests/test_cauchy.py).
S4_DEVICE_ENV = "S4_TEST_DEVICE"


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The torch device named by ``S4_TEST_DEVICE`` (default ``cpu``), e.g. ``cuda``.

    A device that is asked for but missing fails every test that uses it (never a skip), so a
    GPU check cannot pass without a GPU. On CUDA, float32 matmuls are kept in full precision
    (no TF32), so float32 tolerances mean the same as on CPU.
    """
    import torch

    name = os.environ.get(S4_DEVICE_ENV, "cpu").strip() or "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        pytest.fail(f"{S4_DEVICE_ENV}={name!r} is not a torch device: {exc}", pytrace=False)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            pytest.fail(
                f"{S4_DEVICE_ENV}={name} but torch {torch.__version__} sees no CUDA device "
                f"(torch.version.cuda={torch.version.cuda})",
                pytrace=False,
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            pytest.fail(
                f"{S4_DEVICE_ENV}={name}: only {torch.cuda.device_count()} CUDA device(s)",
                pytrace=False,
            )
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
    elif dev.type != "cpu":
        pytest.fail(f"{S4_DEVICE_ENV}={name}: only cpu and cuda are supported", pytrace=False)
    return dev
