"""Stopping on empty or too-small data at the first stage that sees it.

A stage that would write a 0-row (or 0-column) output raises instead: Snakemake would
count that output as finished, and every rerun would then fail further downstream with
an error that no longer says why. Messages give counts only (never identifiers) and the
config key or source path to look at.
"""

from __future__ import annotations

from pipeline.stops import ExpectedStop


class TooLittleData(ExpectedStop, ValueError):
    """A stage's input leaves nothing, or too little, to work on (an expected stop: the
    console shows its message, the job log also the traceback)."""


def require(n: int, minimum: int, message: str) -> None:
    """Raise :class:`TooLittleData` with ``message`` when ``n < minimum``.

    Args:
        n: what the stage has (rows, labels, subjects, ...).
        minimum: the least it can work with.
        message: the counts and the key to change, e.g. "0 of 1,148 ECGs fall within
            90 minutes of an ED intime; check source paths and cohort.ed_window_minutes".
    """
    if n < minimum:
        raise TooLittleData(message)
