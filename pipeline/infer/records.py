"""Which records to score, and reading them exactly as the shard stage did.

Inputs are files of any format :mod:`pipeline.data.formats` reads (WFDB record paths
with or without ``.hea`` / ``.dat``, GE MUSE XML, DICOM, HL7 aECG, EDF, HDF5, NumPy),
directories (every file below them, sorted; a WFDB record once, by its header; files of
no known format kept, to be reported with their reason) or a record-list CSV with one
path column (MIMIC-IV-ECG's ``record_list.csv`` works as is: ``path`` relative to the
file's folder). Each record keeps the key the user gave (the path string as passed or as
in the CSV); an array file of N recordings gives N records keyed ``<path>#<exam id>``
(or ``#<position>`` without ids). Nothing else from a list is read, so no identifier
reaches the outputs or the logs beyond the exam ids an array file keys its rows by.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.ecg_store import Record, RecordError, prepare, record_base, signal_problem
from pipeline.data.formats import ARRAY_FORMATS, ArraySpec, array_items, detect, read_source
from pipeline.data.plausibility import plausibility
from pipeline.data.preprocessing import Preprocessing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordRef:
    """One record to score.

    Attributes:
        key: the user's key (path as given, ``#<exam id>`` added for array files).
        base: the file (a WFDB record: its path without extension).
        fmt: the format :func:`pipeline.data.formats.detect` found (None: unknown).
        item: the recording's position in a multi-record array file.
        spec: rate, leads and units of array files (``--fs --leads --units``).
    """

    key: str
    base: Path
    fmt: str | None = "wfdb"
    item: int | None = None
    spec: ArraySpec | None = None


def _file_refs(key: str, path: Path, spec: ArraySpec | None) -> list[RecordRef]:
    """The records of one file (N for an array file of N recordings)."""
    fmt = detect(path)
    if fmt == "wfdb":
        on_disk = path.is_file() and path.with_suffix(".hea").is_file()  # rec.hea, rec.mat
        return [RecordRef(key, path.with_suffix("") if on_disk else record_base(path))]
    if fmt in ARRAY_FORMATS:
        try:
            items = array_items(path, fmt)
        except RecordError:  # reported when the record is read
            items = [("", None)]
        return [RecordRef(key + suffix, path, fmt, i, spec) for suffix, i in items]
    return [RecordRef(key, path, fmt)]


def _directory_files(folder: Path) -> list[Path]:
    """Every file below ``folder`` except hidden ones and WFDB signal files (their
    ``.hea`` stands for the record), sorted."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
    headers = {f.with_suffix("") for f in files if f.suffix == ".hea"}
    return [f for f in files if f.suffix == ".hea" or f.with_suffix("") not in headers]


def expand_inputs(paths: Sequence[str | Path], spec: ArraySpec | None = None) -> list[RecordRef]:
    """Files and directories -> records, in the given order, without duplicates.

    Args:
        paths: files (any format) and directories.
        spec: rate, leads and units for array files.

    Raises:
        FileNotFoundError: a directory holds no file.
    """
    refs: list[RecordRef] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = _directory_files(p)
            if not found:
                raise FileNotFoundError(f"{p}: empty directory (no ECG files below it)")
            for f in found:
                refs += _file_refs(str(f.with_suffix("") if f.suffix == ".hea" else f), f, spec)
        else:
            refs += _file_refs(str(p), p, spec)
    seen: set[tuple[Path, int | None]] = set()
    unique = []
    for r in refs:  # rec.hea and rec.dat given together name one record
        if (r.base, r.item) not in seen:
            seen.add((r.base, r.item))
            unique.append(r)
    return unique


def read_record_list(
    path: Path, column: str = "path", root: Path | None = None, spec: ArraySpec | None = None
) -> list[RecordRef]:
    """Records of a CSV list; ``column`` paths are relative to ``root`` (default: its folder).

    Any format is accepted; ``spec`` gives array files their rate, leads and units.

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
    return [ref for v in values.to_list() for ref in _file_refs(v, base_dir / v, spec)]


@dataclass
class LoadedBatch:
    """Preprocessed records of a batch and the reasons for those that could not be read.

    Attributes:
        ok: positions (in the batch) of the readable records, in order.
        x: (len(ok), 12, n_samples) float32, as the training shards stored them.
        errors: position -> reason (the shard quarantine reasons).
        warnings: position -> plausibility warnings of a readable record
            (:func:`pipeline.data.plausibility.plausibility`).
        derived: position -> leads the reader computed from I and II.
    """

    ok: list[int]
    x: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)
    warnings: dict[int, list[str]] = field(default_factory=dict)
    derived: dict[int, tuple[str, ...]] = field(default_factory=dict)


def read_checked(ref: RecordRef, prep: Preprocessing) -> tuple[Record, list[str]]:
    """Read and check one record of any format, and judge its plausibility.

    Plausibility is judged on the recorded samples, not on the NaN interpolation.

    Raises:
        RecordError: the quarantine reason.
    """
    rec = read_source(
        ref.base, ref.fmt, prep.source_fs, prep.source_samples, prep.fs, ref.item, ref.spec
    )
    recorded = rec.signal.copy() if np.isnan(rec.signal).any() else rec.signal
    reason = signal_problem(rec.signal)  # interpolates NaNs in place
    if reason is not None:
        raise RecordError(reason)
    return rec, plausibility(recorded, prep.clip_mv, rec.derived)


def load_batch(refs: Sequence[RecordRef], prep: Preprocessing) -> LoadedBatch:
    """Read, check and preprocess records like the shard stage (float16 values included)."""
    ok: list[int] = []
    recs: list[Record] = []
    out = LoadedBatch(ok, np.empty(0, np.float32))
    for i, ref in enumerate(refs):
        try:
            rec, warnings = read_checked(ref, prep)
        except RecordError as err:
            out.errors[i] = str(err)
            continue
        if rec.extra:
            log.warning("%s: ignored extra channel(s) %s", ref.key, ", ".join(rec.extra))
        if warnings:
            out.warnings[i] = warnings
        if rec.derived:
            out.derived[i] = rec.derived
        ok.append(i)
        recs.append(rec)
    out.x = prepare(recs, prep.fs, prep.clip_mv, prep.n_samples).astype(np.float32)
    return out
