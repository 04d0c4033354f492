"""Stream one MIMIC csv(.gz) table into a typed parquet file in bounded memory.

The file is inflated, parsed and written piece by piece (:mod:`pipeline.data.csvstream`:
inflater thread, parsing threads, parquet encoding in the caller), each block a parquet
row group, so peak memory is a few blocks whatever the table size (158 M labevents rows
convert like 1,000).

Column policy: every schema column must be in the header (else :class:`ConvertError`
naming the column and the file). Columns the schema does not know are dropped with a
warning rather than an error, because later MIMIC releases add columns to existing
tables and the pipeline reads only the schema's columns. With ``projection`` a table of
:data:`pipeline.mimic_schema.PROJECTIONS` (labevents) keeps only the columns the pipeline reads;
the parquet's schema metadata says so (key ``ecg_explain.projection``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline import mimic_schema
from pipeline.data.csvstream import READ_ERRORS as _READ_ERRORS
from pipeline.data.csvstream import read_batches
from pipeline.io import atomic_path
from pipeline.logs import progress
from pipeline.mimic_schema import DATE_FORMAT, PROJECTIONS, TIMESTAMP_FORMAT
from pipeline.privacy import is_identifier

log = logging.getLogger(__name__)

PROJECTION_KEY = b"ecg_explain.projection"

_LOG_EVERY_S = 30.0
_BYTES_PER_ROW_SAMPLE = 1 << 16
# Bytes of csv per parsing task; only (threads + 1) are in flight. On labevents 1 MiB
# pieces took less CPU and memory than 4-16 MiB ones (cache-sized parser working set).
_PIECE = 1 << 20


class ConvertError(ValueError):
    """A source table cannot be converted; the message names the file (and column)."""


@dataclass(frozen=True)
class ConvertConfig:
    """Config section ``convert``.

    Attributes:
        batch_rows: rows per parquet row group (the rows buffered before a write,
            so it bounds memory; parsing runs in 1 MiB pieces whatever its value). The
            default is the schema's and the one ``docs/scaling.md`` measured.
        projection: keep only the columns the pipeline reads of the tables in
            :data:`pipeline.mimic_schema.PROJECTIONS` (labevents); False keeps every column.
    """

    batch_rows: int = 1_000_000
    projection: bool = True


@dataclass(frozen=True)
class ConvertStats:
    """What one conversion did."""

    table: str
    rows: int
    batches: int
    columns_dropped: tuple[str, ...]
    seconds: float


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    """The arrow type a schema dtype is stored as (polars reads it back unchanged)."""
    if dtype == pl.Int64:
        return pa.int64()
    if dtype == pl.Float64:
        return pa.float64()
    if dtype == pl.Utf8:
        return pa.string()
    if dtype == pl.Date:
        return pa.date32()
    if isinstance(dtype, pl.Datetime):
        return pa.timestamp(dtype.time_unit or "us")
    raise TypeError(f"no arrow type for schema dtype {dtype}")


def _head(src: Path) -> tuple[list[str], int]:
    """The header's column names and an average row length from the first 64 KiB."""
    try:
        with pa.input_stream(str(src), compression="detect") as stream:
            sample = stream.read(_BYTES_PER_ROW_SAMPLE)
    except (OSError, pa.ArrowException) as exc:
        raise ConvertError(f"{src}: cannot read (corrupt or not csv/gzip?): {exc}") from exc
    text = sample.decode("utf-8", errors="replace")
    if not text.strip():
        raise ConvertError(f"{src}: file is empty (no header row)")
    header = next(csv.reader(io.StringIO(text.splitlines()[0])))
    n_lines = max(text.count("\n") - 1, 1)
    return [h.strip() for h in header], max(len(sample) // n_lines, 16)


def _check_columns(src: Path, name: str, header: list[str]) -> list[str]:
    """Raise on a missing schema column; return the unexpected (dropped) ones."""
    expected = list(mimic_schema.table(name).columns)
    missing = [c for c in expected if c not in header]
    if missing:
        raise ConvertError(
            f"{src}: column(s) {missing} of table {name!r} missing from the header (found {header})"
        )
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise ConvertError(f"{src}: duplicated column(s) {dupes} in the header")
    return [c for c in header if c not in expected]


def _reader(
    src: Path, columns: dict[str, pa.DataType], block_size: int, workers: int | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream the file's ``columns`` in blocks, parsed by ``workers`` threads (default:
    the CPUs this process may use); the source is closed however it ends."""
    convert = pacsv.ConvertOptions(
        column_types=columns,
        include_columns=list(columns),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        # Arrow's ISO 8601 fast path covers MIMIC's "YYYY-MM-DD HH:MM:SS" and costs less
        # CPU than a strptime format (about 15% less for the whole labevents conversion).
        timestamp_parsers=[pacsv.ISO8601],
    )
    header, _ = _head(src)
    workers = workers or len(os.sched_getaffinity(0))
    yield from read_batches(src, header, convert, block_size, workers)


_NUMBER_RE = {
    "int64": r"^\s*[+-]?\d+\s*$",
    "double": r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^[+-]?([nN][aA][nN]|[iI][nN][fF])$",
}


_TIME_FORMATS = (TIMESTAMP_FORMAT, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", DATE_FORMAT)


def _parse_ok(values: pa.Array, dtype: pa.DataType) -> pa.Array:
    """Boolean mask: which strings parse as ``dtype`` (used to locate a bad value)."""
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        formats = _TIME_FORMATS if pa.types.is_timestamp(dtype) else (DATE_FORMAT,)
        ok = pa.array([False] * len(values))
        for fmt in formats:  # the ISO 8601 forms Arrow's parser accepts
            parsed = pc.strptime(values, format=fmt, unit="us", error_is_null=True)
            ok = pc.or_(ok, pc.is_valid(parsed))
    else:
        ok = pc.match_substring_regex(values, _NUMBER_RE.get(str(dtype), ".*"))
    return pc.or_kleene(pc.is_null(values), ok)


def _locate_bad_value(src: Path, column: str, dtype: pa.DataType, block_size: int) -> str:
    """Re-read one column as text and describe its first value that does not parse.

    The value itself is shown only for non-identifier columns: a malformed subject_id or
    date would otherwise reach the console and cluster logs.
    """
    seen = 0
    try:
        for batch in _reader(src, {column: pa.string()}, block_size):
            values = batch.column(0)
            ok = _parse_ok(values, dtype)
            bad = pc.index(ok, False).as_py()
            if bad >= 0:
                row = seen + bad + 1
                if is_identifier(column):
                    return f"data row {row} (line {row + 1}) does not parse (identifier, not shown)"
                return f"data row {row} (line {row + 1}) has value {values[bad].as_py()!r}"
            seen += batch.num_rows
    except _READ_ERRORS:
        pass
    return "row not located"


def _wrap_error(
    exc: Exception, src: Path, name: str, header: list[str], block_size: int
) -> ConvertError:
    """Turn a pyarrow error into one that names the file, column and row."""
    msg = str(exc)
    if isinstance(exc, pa.ArrowInvalid) and msg.startswith("In CSV column #"):
        idx = int(msg.split("#", 1)[1].split(":", 1)[0])
        column = header[idx] if idx < len(header) else f"#{idx}"
        dtype = _arrow_type(mimic_schema.table(name).columns[column])
        where = _locate_bad_value(src, column, dtype, block_size)
        detail = "" if is_identifier(column) else f" ({msg})"  # Arrow's message holds the value
        return ConvertError(f"{src}: column {column!r} expects {dtype}: {where}{detail}")
    # Arrow quotes the offending line after "got N:"; it may hold identifiers, so cut it.
    msg = re.sub(r"(Expected \d+ columns, got \d+): .*", r"\1 (line not shown)", msg, flags=re.S)
    if isinstance(exc, EOFError):  # ISA-L's words for a gzip cut short
        return ConvertError(f"{src}: truncated gzip of table {name!r}: {msg}")
    return ConvertError(f"{src}: conversion of table {name!r} failed: {type(exc).__name__}: {msg}")


def _kept_columns(table: str, projection: bool) -> dict[str, pa.DataType]:
    """The columns written, in schema order, with their arrow types."""
    spec = mimic_schema.table(table)
    keep = PROJECTIONS.get(table, tuple(spec.columns)) if projection else tuple(spec.columns)
    return {c: _arrow_type(t) for c, t in spec.columns.items() if c in keep}


def _writer_schema(table: str, columns: dict[str, pa.DataType]) -> pa.Schema:
    """The parquet schema; a projection is labelled in its metadata (kept, omitted)."""
    out = pa.schema(list(columns.items()))
    omitted = [c for c in mimic_schema.table(table).columns if c not in columns]
    if not omitted:
        return out
    label = {"table": table, "columns": list(columns), "omitted": omitted}
    return out.with_metadata({PROJECTION_KEY: json.dumps(label).encode()})


def _groups(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    """Gather parsed batches into row groups of at least ``rows`` rows (the last: fewer)."""
    group: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        group.append(batch)
        n += batch.num_rows
        if n >= rows:
            yield group
            group, n = [], 0
    if group:
        yield group


def _write(
    batches: Iterator[pa.RecordBatch], dst: Path, out: pa.Schema, table: str, group_rows: int
) -> tuple[int, int]:
    """Write row groups of ``group_rows`` through a temp file; (rows, row groups)."""
    start = last_log = time.monotonic()
    rows = groups = 0
    with (
        atomic_path(dst, suffix=".parquet") as tmp,
        pq.ParquetWriter(tmp, out, compression="zstd") as writer,
    ):
        for group in progress(_groups(batches, group_rows), desc=f"convert {table}", unit="group"):
            chunk = pa.Table.from_batches(group, schema=out)
            writer.write_table(chunk, row_group_size=chunk.num_rows)
            rows += chunk.num_rows
            groups += 1
            now = time.monotonic()
            if now - last_log >= _LOG_EVERY_S:
                log.info("%s: %d rows (%.0f rows/s)", table, rows, rows / (now - start))
                last_log = now
    return rows, groups


def projection_of(path: Path) -> dict[str, object] | None:
    """The projection label of a converted parquet (None: it holds every column)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[PROJECTION_KEY]) if PROJECTION_KEY in meta else None


def convert_table(
    table: str,
    src: Path,
    dst: Path,
    batch_rows: int,
    projection: bool = False,
    threads: int | None = None,
) -> ConvertStats:
    """Convert a MIMIC csv or csv.gz into parquet with the schema's column types.

    Timestamps are parsed as ISO 8601 (MIMIC's ``YYYY-MM-DD HH:MM:SS``), an empty
    field is null, columns come out in schema order. The file is written through
    :func:`pipeline.io.atomic_path`, so a failure leaves no parquet behind.

    Args:
        table: a table of :data:`pipeline.mimic_schema.TABLES`.
        src: the source csv(.gz).
        dst: the parquet file to write.
        batch_rows: rows per parquet row group (bounds peak memory).
        projection: write only the columns of :data:`pipeline.mimic_schema.PROJECTIONS`
            (tables not listed there keep all); the header must still hold every
            schema column, but the omitted ones are not type-checked.
        threads: parsing threads (default: the CPUs this process may use).

    Raises:
        ConvertError: missing file, missing or duplicated column, a value of the
            wrong type (file, column and row named), or a corrupt/truncated gzip.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConvertError(f"{src}: source file of table {table!r} does not exist")
    header, _ = _head(src)
    dropped = _check_columns(src, table, header)
    if dropped:
        log.warning("%s: ignoring %d column(s) not in the schema: %s", src, len(dropped), dropped)
    columns = _kept_columns(table, projection)
    start = time.monotonic()
    try:
        out = _writer_schema(table, columns)
        batches = _reader(src, columns, _PIECE, threads)
        rows, groups = _write(batches, dst, out, table, max(batch_rows, 1))
    except ConvertError:
        raise
    except _READ_ERRORS as exc:
        raise _wrap_error(exc, src, table, header, _PIECE) from exc
    seconds = time.monotonic() - start
    log.info("%s: %d rows in %.1f s (%.0f rows/s)", table, rows, seconds, rows / max(seconds, 1e-9))
    return ConvertStats(table, rows, groups, tuple(dropped), seconds)
