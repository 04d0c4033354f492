"""Suite-wide settings: headless plotting and a deterministic, small torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
