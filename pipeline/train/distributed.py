"""Data-parallel training: one stage on N processes, one device each, one global batch.

With ``train.devices`` N > 1 a stage function decorated with :func:`data_parallel` starts N
copies of itself (``python -c`` processes: no torchrun needed, so a Snakemake rule or a SLURM
job runs it as it runs one process), waits for them, and returns rank 0's result. The
backend is NCCL on CUDA (rank r on GPU r), gloo on CPU.

Every rank builds the same model from the same seed; then, in
:func:`pipeline.train.engine.fit`:

- data: each global batch of the one-process loader (same permutation, same crops) is cut
  into N equal parts and rank r takes part r (:meth:`~pipeline.train.data.EpochLoader.shard`);
  ``batch_size`` stays the global batch;
- gradients: DistributedDataParallel averages them over the ranks; with equal parts that is
  the gradient of the global batch's mean loss;
- batch statistics: the stage-1 objectives gather the global batch's embeddings
  (:mod:`pipeline.parallel`), and the model's BatchNorm1d layers normalise over the global
  batch (:class:`GlobalBatchNorm`, torch's SyncBatchNorm runs on GPUs only);
- rank 0 alone validates (the others wait for its metrics, so early stopping is decided
  once), writes checkpoints, MLflow records and outputs; every rank resumes from rank 0's
  checkpoint. When ``fit`` returns, ranks > 0 exit and rank 0 finishes the stage alone
  (probes, embeddings, a head fitted on cached embeddings, test predictions).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.io import atomic_path
from pipeline.logs import setup_logging
from pipeline.models.supervised import Batch
from pipeline.parallel import Ranks, current, global_batch, join_group, leave_group, local_rows
from pipeline.stops import BadSetting
from pipeline.train.checkpoint import capture_rng, restore_rng

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
StepFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]

# Rank 0 validates alone while the others wait in a collective: the wait must outlast a
# validation pass at MIMIC scale (torch's default is 10-30 minutes).
_TIMEOUT = timedelta(hours=2)
_GRACE_S = 30.0  # after one rank failed, how long the others get to stop on their own


class _TrainingOver(BaseException):
    """Raised on ranks > 0 when ``fit`` returns (a BaseException: no ``except Exception``
    of a stage body catches it); their process then exits cleanly."""


def device_kind(name: str, devices: int, cuda_devices: int) -> str:
    """ "cuda" or "cpu" for ``train.device`` ``name``; BadSetting when ``devices`` processes
    (one GPU each) need more GPUs than the ``cuda_devices`` torch sees."""
    cuda = name == "cuda" or (name == "auto" and cuda_devices > 0)
    if cuda and devices > cuda_devices:
        raise BadSetting(
            f"train.devices is {devices} but torch sees {cuda_devices} CUDA device(s); "
            "lower train.devices or ask the scheduler for more GPUs (profiles/slurm: gpu)"
        )
    return "cuda" if cuda else "cpu"


def check_batch(batch_size: int, devices: int) -> int:
    """The per-rank batch of a global ``batch_size``; BadSetting when it does not split."""
    if batch_size % devices:
        raise BadSetting(
            f"batch_size {batch_size} does not split over train.devices {devices} "
            f"(the global batch is cut into equal parts): use a multiple of {devices}"
        )
    return batch_size // devices


def data_parallel(fn: Callable[P, T]) -> Callable[P, T]:
    """Run stage function ``fn`` on ``runtime.train.devices`` processes.

    ``fn`` takes a ``runtime`` (:class:`~pipeline.train.stage.StageRuntime`) and a ``cfg``
    with the global ``batch_size``; its arguments must pickle. Within a group (and with one
    device) the call runs ``fn`` itself.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        bound = signature.bind(*args, **kwargs).arguments
        train = bound["runtime"].train
        if train.devices <= 1 or current() is not None:
            return fn(*args, **kwargs)
        check_batch(bound["cfg"].batch_size, train.devices)
        kind = device_kind(train.device, train.devices, torch.cuda.device_count())
        # the wrapper (what the module name resolves to) runs in each rank, in the group
        return launch(wrapper, args, kwargs, train.devices, kind)

    return wrapper


@dataclass(frozen=True)
class _Job:
    """What each rank process unpickles: the call, the group and the parent's logging."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    world: int
    kind: str  # "cuda" or "cpu"
    log_file: str | None
    log_level: int


def launch(
    fn: Callable[..., T], args: tuple[Any, ...], kwargs: Mapping[str, Any], world: int, kind: str
) -> T:
    """``fn(*args, **kwargs)`` on ``world`` processes; rank 0's return value, or the first
    failing rank's exception (rank 0's first) re-raised here."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    files = [h.baseFilename for h in handlers]
    for handler in handlers:  # the ranks append to the same log file: ours first
        handler.flush()
    with tempfile.TemporaryDirectory(prefix="ecg-ddp-") as tmp:
        work = Path(tmp)
        job = _Job(fn, args, kwargs, world, kind, files[0] if files else None, root.level)
        (work / "job.pkl").write_bytes(pickle.dumps(job))
        # the ranks import this very code, whatever put it on the parent's path
        path = os.pathsep.join([p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        code = "from pipeline.train.distributed import run_rank; run_rank()"
        log.info("data-parallel training on %d %s processes (train.devices)", world, kind)
        procs = [
            subprocess.Popen([sys.executable, "-c", code, str(work), str(r)], env=env)
            for r in range(world)
        ]
        with _forwarding_signals(procs):
            codes = _wait(procs)
        if any(codes):
            raise _rank_error(work, codes)
        result: T = pickle.loads((work / "result.pkl").read_bytes())
        return result


def _wait(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Exit statuses of every rank; once one failed, the others get ``_GRACE_S`` to stop
    (a rank waiting in a collective for a dead one never would) before they are killed."""
    failed_at: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return [int(c) for c in codes if c is not None]
        if failed_at is None and any(c for c in codes):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > _GRACE_S:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.05)


@contextlib.contextmanager
def _forwarding_signals(procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """SIGTERM / SIGINT to this process go on to every rank: each writes nothing but notes
    it, the ranks agree at the next step and rank 0 writes the resume checkpoint
    (:mod:`pipeline.train.interrupt`); a rank that got it directly notes it once."""

    def forward(signum: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _rank_error(work: Path, codes: list[int]) -> BaseException:
    for rank in range(len(codes)):  # rank 0's own error first: the others may echo it
        path = work / f"error_{rank}.pkl"
        if path.exists():
            with contextlib.suppress(Exception):
                err: BaseException = pickle.loads(path.read_bytes())
                return err
    return RuntimeError(f"data-parallel training failed: rank exit statuses {codes} (see log)")


def run_rank() -> None:
    """A rank process: ``argv`` = (work directory, rank)."""
    work, rank = Path(sys.argv[1]), int(sys.argv[2])
    try:
        job: _Job = pickle.loads((work / "job.pkl").read_bytes())
    except Exception as err:  # e.g. a function of a script's __main__: it does not pickle
        _hand_over(work, rank, RuntimeError(f"rank {rank} cannot load its job: {err}"))
        sys.exit(1)
    # rank 0 logs what one process would; the others only warnings, into the same file
    setup_logging(job.log_file, job.log_level if rank == 0 else logging.WARNING, append=True)
    device = torch.device("cuda", rank) if job.kind == "cuda" else torch.device("cpu")
    if job.kind == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if job.kind == "cuda" else "gloo",
        init_method=(work / "rendezvous").as_uri(),
        rank=rank,
        world_size=job.world,
        timeout=_TIMEOUT,
    )
    join_group(Ranks(rank, job.world, device))
    status = 0
    try:
        result = job.fn(*job.args, **job.kwargs)
        if rank == 0:
            with atomic_path(work / "result.pkl") as tmp:
                tmp.write_bytes(pickle.dumps(result))
    except _TrainingOver:
        pass
    except BaseException as err:  # handed to the parent, which re-raises it
        status = err.code if isinstance(err, SystemExit) and isinstance(err.code, int) else 1
        if not isinstance(err, SystemExit):
            log.error("rank %d failed", rank, exc_info=True)
        _hand_over(work, rank, err)
    leave_group()
    if status == 0:
        dist.destroy_process_group()
    sys.exit(status)


def _hand_over(work: Path, rank: int, err: BaseException) -> None:
    """Leave ``err`` for the parent to re-raise (as a RuntimeError if it does not pickle)."""
    try:
        payload = pickle.dumps(err)
    except Exception:
        payload = pickle.dumps(RuntimeError(f"rank {rank}: {type(err).__name__}: {err}"))
    (work / f"error_{rank}.pkl").write_bytes(payload)


def threads_per_rank(threads: int) -> int:
    """The CPU threads of one rank: ``threads`` (0: torch's default) shared by the ranks on
    CPU, so that N processes do not oversubscribe the job's cores."""
    ranks = current()
    if ranks is None or ranks.device.type != "cpu":
        return threads
    return max(1, (threads or torch.get_num_threads()) // ranks.world)


class GlobalBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the data-parallel global batch.

    The rows of every rank are gathered (differentiably), normalised together as one
    process would, and each rank keeps its own rows; the running statistics are updated
    from the global batch on every rank alike. Outside a group it is BatchNorm1d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or current() is None:
            return super().forward(x)
        return local_rows(super().forward(global_batch(x)))  # (B/N, C) -> (B, C) -> (B/N, C)


def global_batch_norm(model: nn.Module) -> nn.Module:
    """Every BatchNorm1d of ``model`` turned into a :class:`GlobalBatchNorm` in place.

    The class is swapped rather than the module replaced: GlobalBatchNorm adds no state, and
    the optimizer, built before, keeps pointing at the same parameters.
    """
    for module in model.modules():
        if type(module) is nn.BatchNorm1d:
            module.__class__ = GlobalBatchNorm
    return model


class _Step(nn.Module):
    """The model and a step function as one module: DistributedDataParallel's forward must
    wrap the whole loss computation (it prepares the gradient reduction there)."""

    def __init__(self, model: nn.Module, step_fn: StepFn) -> None:
        super().__init__()
        self.model = model
        self.step_fn = step_fn

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.step_fn(self.model, batch)


def parallel_step(model: nn.Module, step_fn: StepFn) -> StepFn:
    """``step_fn`` with gradients averaged over the group (``step_fn`` itself alone).

    Wrapping broadcasts rank 0's weights and buffers: call it once every rank holds the
    starting state (after a resume or rank 0's head warm start).
    """
    ranks = current()
    if ranks is None:
        return step_fn
    global_batch_norm(model)
    ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    ddp = DistributedDataParallel(_Step(model, step_fn), device_ids=ids)

    def step(_: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        out: tuple[torch.Tensor, dict[str, float]] = ddp(batch)
        return out

    return step


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` computed on rank 0 alone and handed to every rank (validation: decided once)."""
    ranks = current()
    if ranks is None:
        return fn()
    box = [fn() if ranks.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def on_main_alone(fn: Callable[[], None]) -> None:
    """``fn()`` on rank 0 only, outside the group (a head warm start on cached embeddings);
    then every rank continues from rank 0's RNG states (the weights follow when
    :func:`parallel_step` wraps the model)."""
    ranks = current()
    if ranks is None:
        fn()
        return
    if ranks.main:
        leave_group()
        try:
            fn()
        finally:
            join_group(ranks)
    box = [capture_rng() if ranks.main else None]
    dist.broadcast_object_list(box, src=0)
    assert box[0] is not None
    restore_rng(box[0])


def global_tally(n: int, metrics: Mapping[str, float]) -> tuple[int, dict[str, float]]:
    """(records, batch-size-weighted mean of each metric) over every rank's part of a step."""
    ranks = current()
    if ranks is None:
        return n, dict(metrics)
    keys = list(metrics)  # the same step function on every rank: the same keys, in order
    sums = torch.tensor([n, *(n * metrics[k] for k in keys)], dtype=torch.float64)
    sums = sums.to(ranks.device)
    dist.all_reduce(sums)
    total = float(sums[0])
    return int(total), {k: float(sums[i + 1]) / total for i, k in enumerate(keys)}


def agreed_signal(received: int | None) -> int | None:
    """A stop signal any rank received (each notes its own; all must stop at one step)."""
    ranks = current()
    if ranks is None:
        return received
    flag = torch.tensor([received or 0], dtype=torch.int64, device=ranks.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag) or None


def end_training() -> None:
    """After ``fit``: ranks > 0 exit, rank 0 goes on alone (outputs, probes)."""
    ranks = current()
    if ranks is None:
        return
    if not ranks.main:
        raise _TrainingOver
    leave_group()
