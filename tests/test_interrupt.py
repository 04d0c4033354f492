"""SIGTERM during an epoch: a checkpoint at the next step, the MLflow run KILLED at once, one
log line, exit status 143; the rerun resumes mid-epoch to the weights of an uninterrupted run.

The training runs as a real process (the tiny world of train_fixtures), killed from outside
as SLURM would at a time limit or on preemption.
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from train_fixtures import build_world, model_cfg, pretrain_cfg, runtime

from pipeline import tracking as mlflow_tracking
from pipeline.train.pretrain import pretrain
from tests.snakemake_helpers import REPO

# 32 steps per epoch (64 records, batches of 2): a signal sent once training runs lands
# inside the first epoch. checkpoint_minutes ~ every step, so last.pt appearing tells the
# test that training (and the signal handling) has started.
CFG = {"epochs": 2, "batch_size": 2}
CHILD = """
import pickle, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from train_fixtures import model_cfg, pretrain_cfg, train_cfg
from pipeline.logs import setup_logging
from pipeline.tracking import TrackingConfig
from pipeline.train.pretrain import pretrain
from pipeline.train.stage import StageRuntime

root = Path(sys.argv[1])
setup_logging(root / "pretrain.log")
world = pickle.loads((root / "world.pickle").read_bytes())  # built once by the test
runtime = StageRuntime(train_cfg(checkpoint_minutes=1e-4),
                       TrackingConfig(results_dir=str(root / "results")),
                       checkpoint_dir=root / "ck")
pretrain(world.pretrain_inputs(), root / "out", pretrain_cfg(**{cfg!r}), model_cfg(), runtime)
"""


def _child(root: Path) -> subprocess.Popen[str]:
    script = CHILD.format(tests=str(REPO / "tests"), cfg=CFG)
    return subprocess.Popen(
        [sys.executable, "-c", script, str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stage_runs(root: Path) -> list:
    from mlflow import MlflowClient

    cfg = mlflow_tracking.TrackingConfig(results_dir=str(root / "results"))
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    role = f"tags.`{mlflow_tracking.ROLE_TAG}` = 'stage'"
    return client.search_runs([exp.experiment_id], role, order_by=["attributes.start_time ASC"])


def test_sigterm_mid_epoch_checkpoints_closes_the_run_and_resumes_bit_identically(
    tmp_path: Path,
) -> None:
    root = tmp_path / "run"
    world = build_world(root / "world")  # once: the checkpoint is keyed by input file identities
    (root / "world.pickle").write_bytes(pickle.dumps(world))
    proc = _child(root)
    ckpt = root / "ck" / "last.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ckpt.exists(), proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)

    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if "stopped by SIGTERM" in x]
    assert len(line) == 1 and "resume checkpoint" in line[0] and "exit status 143" in line[0]
    assert line[0] in (root / "pretrain.log").read_text()
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    done = saved["epoch"]  # epochs finished: 0, unless this machine lagged the signal
    assert done < CFG["epochs"] and 0 < saved["tally"]["batches"] <= 32  # after a step
    assert not (root / "out").exists()
    (killed,) = _stage_runs(root)  # closed at once, not by the rerun
    assert killed.info.status == "KILLED" and killed.info.end_time is not None
    reason = killed.data.tags[mlflow_tracking.STOP_TAG]
    assert reason.startswith(f"SIGTERM at epoch {done + 1}, batch ") and str(ckpt) in reason

    rerun = _child(root)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert f"resumed after epoch {done} (and {saved['tally']['batches']} batches)" in err
    assert not ckpt.exists()

    # The same training uninterrupted, in this process, with the default checkpoint cadence.
    full = tmp_path / "full"
    args = (pretrain_cfg(**CFG), model_cfg(), runtime(checkpoint_dir=tmp_path / "ck_full"))
    pretrain(world.pretrain_inputs(), full, *args)
    a, b = (
        load_file(str(full / "encoder.safetensors")),
        load_file(str(root / "out/encoder.safetensors")),
    )
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert (full / "history.tsv").read_text() == (root / "out/history.tsv").read_text()

    old, new = _stage_runs(root)
    assert new.info.status == "FINISHED"
    assert new.data.tags[mlflow_tracking.RESUMES_TAG] == old.info.run_id
    assert old.data.tags[mlflow_tracking.SUPERSEDED_TAG] == new.info.run_id
