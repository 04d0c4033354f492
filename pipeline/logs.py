"""Logging and progress reporting shared by every stage."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from tqdm.auto import tqdm

from pipeline.stops import ExpectedStop

T = TypeVar("T")

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(
    log_file: str | Path | None = None, level: int = logging.INFO, append: bool = False
) -> None:
    """Log to stderr and, when given, to ``log_file`` (the rule's ``log:``; ``append``: after
    what is there, as the processes of data-parallel training do).

    Also routes an uncaught exception through logging, so the reason a job failed
    (message and traceback) lands in its log file, not only on the console, which under
    Snakemake or SLURM is a different file. For an expected stop
    (:class:`~pipeline.stops.ExpectedStop`: too little data, a setting a job found bad) the
    console gets the one-line message only; the traceback stays in the log file.
    """
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_ConsoleFormatter(_FORMAT))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a" if append else "w"))
    logging.basicConfig(level=level, format=_FORMAT, handlers=handlers, force=True)
    sys.excepthook = log_uncaught


def log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """``sys.excepthook``: the error and its traceback to every handler (console and file).

    The first line carries the exception type and message, so ``tail -n`` or ``grep``
    on a job log finds the reason; the traceback follows.
    """
    what = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
    what = "stopped" if issubclass(exc_type, ExpectedStop) else what
    logging.getLogger("pipeline").critical(
        "stage %s: %s: %s", what, exc_type.__name__, exc, exc_info=(exc_type, exc, tb)
    )


class _ConsoleFormatter(logging.Formatter):
    """The standard format, without the traceback of an expected stop."""

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, ExpectedStop):
            return super().format(record)
        return super().format(
            logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        )


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
) -> Iterator[T]:
    """A tqdm bar on a terminal; a line every 30 s (count, rate, ETA) in batch logs.

    Cluster and Snakemake logs are not terminals, where a redrawn bar would write
    thousands of carriage-return fragments; there we fall back to sparse updates.
    """
    interactive = sys.stderr.isatty()
    yield from tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        mininterval=0.1 if interactive else 30.0,
        dynamic_ncols=interactive,
        file=sys.stderr,
    )
