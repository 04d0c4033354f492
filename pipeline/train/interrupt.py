"""Stopping training cleanly on SIGTERM / SIGINT, and checkpoints every N minutes.

SLURM sends SIGTERM at a job's time limit (earlier with ``--signal``, see
``profiles/slurm``) and on preemption; a terminal sends SIGINT. While
:func:`pipeline.train.engine.fit` runs with a resume checkpoint, the handlers installed
here only note the signal; the loop looks at the note after every optimizer step (a step
boundary, where model, optimizer, scheduler and RNG states agree) and at the end of every
epoch. There the :class:`StepGuard` writes the resume checkpoint, logs one line, and raises
:class:`~pipeline.stops.Interrupted`: the MLflow run closes as KILLED with the reason
(:mod:`pipeline.tracking`) and the process exits with 128 + the signal number, which
Snakemake counts as a failure and retries; the retry resumes mid-epoch, bit-identically on
CPU (the batch order is a pure function of seed and epoch, see
:class:`~pipeline.train.data.EpochLoader`).

An epoch at the reference size on CPU can outlast a cluster job, so the guard also writes
the checkpoint every ``train.checkpoint_minutes`` at a step boundary: a job killed without
warning (SIGKILL, a lost node) loses at most that much work.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

from pipeline.stops import Interrupted, signal_name
from pipeline.train.checkpoint import CheckpointSpec
from pipeline.train.distributed import agreed_signal

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# (completed epochs, the tally of the epoch under way or None) -> the checkpoint dict now
Snapshot = Callable[[int, "EpochTally | None"], Mapping[str, Any]]


@dataclass
class EpochTally:
    """The epoch so far: batches done and the batch-size-weighted sums of the step metrics.

    A mid-epoch checkpoint carries it, so the resumed epoch reports the same means.
    """

    batches: int = 0
    seen: int = 0
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, n: int, metrics: Mapping[str, float]) -> None:
        self.batches += 1
        self.seen += n
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n

    def means(self) -> dict[str, float]:
        return {k: v / self.seen for k, v in self.sums.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "seen": self.seen, "sums": dict(self.sums)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> EpochTally:
        if not d:
            return cls()
        return cls(int(d["batches"]), int(d["seen"]), dict(d["sums"]))


class StepGuard:
    """Signal handlers for the duration of a ``with`` block, and checkpoints at step boundaries.

    Without a checkpoint (``spec`` None) nothing is installed: a stage that cannot resume
    keeps the default signal behaviour.
    """

    def __init__(self, spec: CheckpointSpec | None, desc: str, snapshot: Snapshot) -> None:
        self.spec = spec
        self.desc = desc
        self.snapshot = snapshot
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._last_save = time.monotonic()

    def __enter__(self) -> StepGuard:
        # Handlers can only be installed from the main thread (a training run in a worker
        # thread, e.g. a notebook's, keeps the default behaviour).
        if self.spec is not None and threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        self._last_save = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        # A second signal while the first is being handled changes nothing: the checkpoint
        # is written once, at the next boundary.
        if self.received is None:
            self.received = signum

    def saved(self) -> None:
        """A checkpoint was just written (the epoch checkpoint): restart the clock."""
        self._last_save = time.monotonic()

    def after_step(self, epoch: int, tally: EpochTally, n_batches: int) -> None:
        """At a step boundary of epoch ``epoch`` (0-based; ``tally`` holds the batches done):
        stop on a received signal, else checkpoint when ``spec.minutes`` have passed."""
        if self.spec is None:
            return
        self.received = agreed_signal(self.received)  # data-parallel: all ranks stop here
        where = f"epoch {epoch + 1}, batch {tally.batches} of {n_batches}"
        if self.received is not None:
            self._stop(where, self.snapshot(epoch, tally))
        minutes = self.spec.minutes
        if minutes > 0 and time.monotonic() - self._last_save >= 60.0 * minutes:
            self.spec.save(self.snapshot(epoch, tally))
            self.saved()
            log.info("%s: %g-minute checkpoint at %s", self.desc, minutes, where)

    def after_epoch(self, epoch: int) -> None:
        """After epoch ``epoch`` (1-based) was validated: stop on a received signal."""
        if self.spec is not None:
            self.received = agreed_signal(self.received)
        if self.spec is not None and self.received is not None:
            self._stop(f"the end of epoch {epoch}", self.snapshot(epoch, None))

    def _stop(self, where: str, ckpt: Mapping[str, Any]) -> None:
        assert self.spec is not None and self.received is not None
        self.spec.save(ckpt)
        name = signal_name(self.received)
        reason = f"{name} at {where}; resume checkpoint {self.spec.path}"
        stop = Interrupted(self.received, reason)
        log.warning(
            "%s: stopped by %s; exit status %d, a rerun or Snakemake's retry resumes there",
            self.desc,
            reason,
            stop.status,
        )
        raise stop
