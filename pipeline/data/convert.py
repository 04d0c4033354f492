"""Stream one MIMIC csv(.gz) table into a typed parquet file in bounded memory.

pyarrow's streaming CSV reader decompresses and parses the file block by block; each
block is written as its own parquet row group, so peak memory is a few blocks whatever
the table size (158 M labevents rows convert like 1,000).

Column policy: every schema column must be in the header (else :class:`ConvertError`
naming the column and the file). Columns the schema does not know are dropped with a
warning rather than an error, because later MIMIC releases add columns to existing
tables and the pipeline reads only the schema's columns.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.io import atomic_path
from pipeline.logs import progress
from pipeline.schema import DATE_FORMAT, TIMESTAMP_FORMAT

log = logging.getLogger(__name__)

_LOG_EVERY_S = 30.0
_BYTES_PER_ROW_SAMPLE = 1 << 16
# Block bounds in bytes. Arrow's reader keeps dozens of blocks in flight, so the block
# size sets peak memory: 16 MiB gave ~0.9 GB peak RSS on 20 M labevents rows (64 MiB:
# 2.3 GB) and was faster too (bench/extract.py).
_MIN_BLOCK, _MAX_BLOCK = 1 << 20, 1 << 24


class ConvertError(ValueError):
    """A source table cannot be converted; the message names the file (and column)."""


@dataclass(frozen=True)
class ConvertConfig:
    """Config section ``convert``.

    Attributes:
        batch_rows: rows per streamed CSV block (approximate: blocks are sized in
            bytes from the average row length of the file's first 64 KiB, and kept
            between 1 and 16 MiB, so with long rows this is an upper bound).
    """

    batch_rows: int = 1_000_000


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
    expected = list(schema.table(name).columns)
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
    src: Path, columns: dict[str, pa.DataType], block_size: int
) -> pacsv.CSVStreamingReader:
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
    read = pacsv.ReadOptions(block_size=block_size, use_threads=True)
    stream = pa.input_stream(str(src), compression="detect")
    return pacsv.open_csv(stream, read_options=read, convert_options=convert)


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
    """Re-read one column as text and describe its first value that does not parse."""
    seen = 0
    try:
        for batch in _reader(src, {column: pa.string()}, block_size):
            values = batch.column(0)
            ok = _parse_ok(values, dtype)
            bad = pc.index(ok, False).as_py()
            if bad >= 0:
                row = seen + bad + 1
                return f"data row {row} (line {row + 1}) has value {values[bad].as_py()!r}"
            seen += batch.num_rows
    except (OSError, pa.ArrowException):
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
        dtype = _arrow_type(schema.table(name).columns[column])
        where = _locate_bad_value(src, column, dtype, block_size)
        return ConvertError(f"{src}: column {column!r} expects {dtype}: {where} ({msg})")
    return ConvertError(f"{src}: conversion of table {name!r} failed: {type(exc).__name__}: {msg}")


def convert_table(table: str, src: Path, dst: Path, batch_rows: int) -> ConvertStats:
    """Convert a MIMIC csv or csv.gz into parquet with the schema's column types.

    Timestamps are parsed as ISO 8601 (MIMIC's ``YYYY-MM-DD HH:MM:SS``), an empty
    field is null, columns come out in schema order. The file is written through
    :func:`pipeline.io.atomic_path`, so a failure leaves no parquet behind.

    Args:
        table: a table of :data:`pipeline.schema.TABLES`.
        src: the source csv(.gz).
        dst: the parquet file to write.
        batch_rows: approximate rows per streamed block (bounds peak memory).

    Raises:
        ConvertError: missing file, missing or duplicated column, a value of the
            wrong type (file, column and row named), or a corrupt/truncated gzip.
    """
    src, dst = Path(src), Path(dst)
    spec = schema.table(table)
    if not src.is_file():
        raise ConvertError(f"{src}: source file of table {table!r} does not exist")
    header, row_bytes = _head(src)
    dropped = _check_columns(src, table, header)
    if dropped:
        log.warning("%s: ignoring %d column(s) not in the schema: %s", src, len(dropped), dropped)
    columns = {c: _arrow_type(t) for c, t in spec.columns.items()}
    block_size = int(min(max(batch_rows * row_bytes, _MIN_BLOCK), _MAX_BLOCK))
    start = time.monotonic()
    rows = batches = 0
    last_log = start
    try:
        reader = _reader(src, columns, block_size)
        with (
            atomic_path(dst, suffix=".parquet") as tmp,
            pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer,
        ):
            for batch in progress(reader, desc=f"convert {table}", unit="block"):
                writer.write_batch(batch)
                rows += batch.num_rows
                batches += 1
                now = time.monotonic()
                if now - last_log >= _LOG_EVERY_S:
                    log.info("%s: %d rows (%.0f rows/s)", table, rows, rows / (now - start))
                    last_log = now
    except ConvertError:
        raise
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise _wrap_error(exc, src, table, header, block_size) from exc
    seconds = time.monotonic() - start
    log.info("%s: %d rows in %.1f s (%.0f rows/s)", table, rows, seconds, rows / max(seconds, 1e-9))
    return ConvertStats(table, rows, batches, tuple(dropped), seconds)
