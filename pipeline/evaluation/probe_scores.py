"""One encoder's probe scores on disk: what a per-encoder probe job writes and the probe
table reads (``results/probe/<encoder>.npz``).

Each encoder is probed by its own job as soon as its encoder exists; the probe table
(probe.md, probe.csv, the heatmap) then combines the files. Everything the table reads is
stored exactly (float64 arrays, the bootstrap resamples for the paired differences), so
the combined table is the one a single job probing every encoder in turn writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluation.probe_fit import ProbeScore, Variable
from pipeline.io import atomic_path
from pipeline.metrics import Estimate

_TEXT = ("source", "name", "kind", "transform", "status")


@dataclass(frozen=True)
class EncoderScores:
    """The probes of one encoder.

    Attributes:
        encoder: The encoder's name (``random_init``, a stage-1 encoder or a model).
        variables: The probed variables in order; read back without their values (the
            table needs their source, name and kind only).
        scores: One score per variable.
        notes: Labs that could not be probed, with the reason.
    """

    encoder: str
    variables: tuple[Variable, ...]
    scores: tuple[ProbeScore, ...]
    notes: tuple[str, ...]


def write_scores(path: Path, result: EncoderScores) -> None:
    """Write ``result`` to ``path`` (.npz) through a temporary file and a rename."""
    scores, n = result.scores, len(result.scores)
    width = max((len(s.boot) for s in scores), default=0)
    boot = np.full((n, width), np.nan)  # (V, B); rows of skipped probes stay empty
    for i, s in enumerate(scores):
        boot[i, : len(s.boot)] = s.boot
    text = {
        "source": [v.source for v in result.variables],
        "name": [v.name for v in result.variables],
        "kind": [v.kind for v in result.variables],
        "transform": [s.transform for s in scores],
        "status": [s.status for s in scores],
    }
    arrays: dict[str, Any] = {  # Any: savez's keyword annotations clash with ** of arrays
        "encoder": np.array(result.encoder),
        "notes": np.array(result.notes, dtype=str),
        **{k: np.array(v, dtype=str) for k, v in text.items()},
        "estimate": np.array(
            [[s.estimate.point, s.estimate.low, s.estimate.high] for s in scores]
        ).reshape(n, 3),
        "counts": np.array(
            [[s.estimate.n_resamples, s.n_train, s.n_test, len(s.boot)] for s in scores],
            dtype=np.int64,
        ).reshape(n, 4),
        "hyper": np.array([s.hyper for s in scores], dtype=np.float64),
        "boot": boot,
    }
    with atomic_path(path, suffix=".npz") as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)


def read_scores(path: Path) -> EncoderScores:
    """The scores :func:`write_scores` wrote to ``path``."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    text = {k: [str(x) for x in data[k]] for k in _TEXT}
    variables = tuple(
        Variable(s, n, k, np.zeros(0))  # type: ignore[arg-type]  # kind as written
        for s, n, k in zip(text["source"], text["name"], text["kind"], strict=True)
    )
    scores = tuple(
        ProbeScore(
            Estimate(float(e[0]), float(e[1]), float(e[2]), int(c[0])),
            data["boot"][i, : int(c[3])].copy(),
            float(data["hyper"][i]),
            text["transform"][i],
            int(c[1]),
            int(c[2]),
            text["status"][i],
        )
        for i, (e, c) in enumerate(zip(data["estimate"], data["counts"], strict=True))
    )
    notes = tuple(str(x) for x in data["notes"])
    return EncoderScores(str(data["encoder"]), variables, scores, notes)


def same_variables(results: Sequence[EncoderScores], paths: Sequence[Path]) -> None:
    """Raise unless every encoder was probed on the same variables, in the same order."""
    first = [(v.source, v.name, v.kind) for v in results[0].variables]
    for result, path in zip(results[1:], paths[1:], strict=True):
        if [(v.source, v.name, v.kind) for v in result.variables] != first:
            raise ValueError(
                f"{path}: probed other variables than {paths[0]} (stale file? re-run the probe)"
            )
