"""The two ways a job stops on purpose, told apart from crashes.

* :class:`ExpectedStop`: the data or a setting leave nothing sensible to do (too little
  data, a setting only a job can check). The message says what and which key to change;
  the console shows that one line, the job log keeps the traceback
  (:func:`pipeline.logs.log_uncaught`).
* :class:`Interrupted`: the process was asked to terminate (SIGTERM from SLURM at a time
  limit or on preemption, SIGINT from a terminal) and training stopped at a step boundary
  after writing its resume checkpoint. It is a :class:`SystemExit` with status
  128 + signal number, what the signal itself would have given, so no ``except
  Exception`` swallows it, the interpreter exits without a traceback, and Snakemake
  counts the job as failed and retries it (``retries:``), which resumes.

This module imports nothing heavy: the tracking and logging modules use it.
"""

from __future__ import annotations

import signal


class ExpectedStop(Exception):
    """A stop whose one-line message says all a user needs (no traceback on the console)."""


class BadSetting(ExpectedStop, ValueError):
    """A setting that only a running job can find wrong (e.g. ``train.device: cuda`` on a node
    without CUDA); the message names the key."""


class Interrupted(SystemExit):
    """Training stopped on a signal after writing its resume checkpoint.

    Attributes:
        signum: the signal received.
        reason: one line for logs and the MLflow run (signal, position, checkpoint).
    """

    def __init__(self, signum: int, reason: str) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.reason = reason

    @property
    def status(self) -> int:
        """The process exit status (128 + signal number, as the shell reports a signal)."""
        return 128 + self.signum

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[type[Interrupted], tuple[int, str]]:
        # a rank of data-parallel training hands it to its parent (pipeline.train.distributed)
        return Interrupted, (self.signum, self.reason)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
