"""Which records to score, and reading them exactly as the shard stage did.

Inputs are WFDB record paths (with or without ``.hea`` / ``.dat``), directories (every
record below them, by header file, sorted) or a record-list CSV with one path column
(MIMIC-IV-ECG's ``record_list.csv`` works as is: ``path`` relative to the file's folder).
Each record keeps the key the user gave (the path string as passed or as in the CSV);
nothing else from a list is read, so no identifier reaches the outputs or the logs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.ecg_store import Record, RecordError, load_checked, prepare, record_base
from pipeline.data.preprocessing import Preprocessing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordRef:
    """One record to score: the user's key and the record path without extension."""

    key: str
    base: Path


def expand_inputs(paths: Sequence[str | Path]) -> list[RecordRef]:
    """Record paths and directories -> records, in the given order, without duplicates.

    Raises:
        FileNotFoundError: a directory holds no ``.hea`` file.
    """
    refs: list[RecordRef] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(h.with_suffix("") for h in p.rglob("*.hea"))
            if not found:
                raise FileNotFoundError(f"{p}: directory without WFDB records (*.hea)")
            refs += [RecordRef(str(b), b) for b in found]
        else:
            refs.append(RecordRef(str(p), record_base(p)))
    seen: set[Path] = set()
    unique = []
    for r in refs:  # rec.hea and rec.dat given together name one record
        if r.base not in seen:
            seen.add(r.base)
            unique.append(r)
    return unique


def read_record_list(path: Path, column: str = "path", root: Path | None = None) -> list[RecordRef]:
    """Records of a CSV list; ``column`` paths are relative to ``root`` (default: its folder).

    Raises:
        ValueError: the column is missing or has empty values.
    """
    path = Path(path)
    header = pl.read_csv(path, n_rows=0).columns
    if column not in header:
        raise ValueError(f"{path}: no column {column!r} (columns: {', '.join(header)})")
    values = pl.read_csv(path, columns=[column], schema_overrides={column: pl.Utf8})[column]
    if values.null_count():
        raise ValueError(f"{path}: column {column!r} has {values.null_count()} empty value(s)")
    base_dir = Path(root) if root is not None else path.parent
    return [RecordRef(v, record_base(base_dir / v)) for v in values.to_list()]


@dataclass
class LoadedBatch:
    """Preprocessed records of a batch and the reasons for those that could not be read.

    Attributes:
        ok: positions (in the batch) of the readable records, in order.
        x: (len(ok), 12, n_samples) float32, as the training shards stored them.
        errors: position -> reason (the shard quarantine reasons).
    """

    ok: list[int]
    x: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)


def load_batch(refs: Sequence[RecordRef], prep: Preprocessing) -> LoadedBatch:
    """Read, check and preprocess records like the shard stage (float16 values included)."""
    ok: list[int] = []
    recs: list[Record] = []
    errors: dict[int, str] = {}
    for i, ref in enumerate(refs):
        try:
            rec = load_checked(ref.base, prep.source_fs, prep.source_samples, prep.fs)
        except RecordError as err:
            errors[i] = str(err)
            continue
        if rec.extra:
            log.warning("%s: ignored extra channel(s) %s", ref.key, ", ".join(rec.extra))
        ok.append(i)
        recs.append(rec)
    x = prepare(recs, prep.fs, prep.clip_mv, prep.n_samples).astype(np.float32)
    return LoadedBatch(ok, x, errors)
