"""What "deterministic" covers: same config, seed and train.num_threads -> identical bytes.

Each run is a fresh interpreter (no state shared between the runs), as two runs of a rule
would be. The thread count is part of the contract (CPU reductions are split per thread),
so it is recorded in model.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.snakemake_helpers import REPO

# Build the tiny world, pre-train, then fine-tune the method on the pre-trained encoder.
RUN = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from train_fixtures import build_world, model_cfg, pretrain_cfg, runtime, stage_cfg, train_cfg
from pipeline.train.pretrain import pretrain
from pipeline.train.supervised import train_supervised

root, threads = Path(sys.argv[1]), int(sys.argv[2])
world = build_world(root / "world")
train = train_cfg(num_threads=threads)
pretrain(world.pretrain_inputs(), root / "pretrain", pretrain_cfg(epochs=1), model_cfg(),
         runtime(train, checkpoint_dir=root / "ck_pre"))
train_supervised("method_diagnoses", world.supervised_inputs("diagnoses", root / "pretrain"),
                 root / "model", root / "pred.npz", stage_cfg(epochs=1), model_cfg(),
                 runtime(train, checkpoint_dir=root / "ck"))
"""

OUTPUTS = (
    "pretrain/encoder.safetensors",
    "pretrain/model.json",
    "model/model.safetensors",
    "model/model.json",
    "model/history.tsv",
    "pred.npz",
)


def _run(root: Path, threads: int) -> Path:
    script = RUN.format(tests=str(REPO / "tests"))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(root), str(threads)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("a"), threads=1)


def test_same_config_seed_and_threads_give_identical_bytes(
    one_thread: Path, tmp_path: Path
) -> None:
    again = _run(tmp_path, threads=1)
    differing = [f for f in OUTPUTS if (one_thread / f).read_bytes() != (again / f).read_bytes()]
    assert not differing


def test_model_json_records_the_thread_count(one_thread: Path, tmp_path: Path) -> None:
    import numpy as np
    import torch

    for meta in ("pretrain/model.json", "model/model.json"):
        record = json.loads((one_thread / meta).read_text())
        assert record["num_threads"] == 1
        # and what else the bytes depend on across machines (README: Determinism)
        runtime = record["runtime"]
        assert runtime["num_threads"] == 1
        assert runtime["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert (runtime["torch"], runtime["numpy"]) == (torch.__version__, np.__version__)
    two = _run(tmp_path, threads=2)
    for meta in ("pretrain/model.json", "model/model.json"):
        assert json.loads((two / meta).read_text())["num_threads"] == 2
