"""Reading the converted parquet tables with errors that name the file and column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from pipeline.mimic_schema import PROJECTIONS, polars_schema


class TableError(ValueError):
    """A converted table is missing or does not carry the expected columns."""


def table_path(tables: Mapping[str, Path | str], name: str) -> Path:
    """The parquet file of ``name`` in ``tables``; a clear error when absent."""
    if name not in tables:
        raise TableError(f"table {name!r} was not passed to this stage (have: {sorted(tables)})")
    path = Path(tables[name])
    if not path.is_file():
        raise TableError(f"{path}: converted table {name!r} does not exist (run rule convert)")
    return path


def scan(
    tables: Mapping[str, Path | str], name: str, columns: Sequence[str] | None = None
) -> pl.LazyFrame:
    """Lazily scan a converted table, checking the columns we use against the schema.

    Args:
        tables: table name -> parquet path.
        name: a table of :data:`pipeline.mimic_schema.TABLES`.
        columns: the columns to select (all schema columns when None).

    Raises:
        TableError: the file is missing, or a column is absent or has another dtype.
    """
    path = table_path(tables, name)
    expected = polars_schema(name)
    wanted = list(columns) if columns is not None else list(expected)
    try:
        actual = pl.read_parquet_schema(path)
    except Exception as exc:  # polars raises several error types for a broken file
        raise TableError(f"{path}: cannot read parquet schema of {name!r}: {exc}") from exc
    for col in wanted:
        if col not in actual:
            hint = (
                " (converted as a projection: add it to pipeline.mimic_schema.PROJECTIONS"
                " or set convert.projection: false)"
                if col not in PROJECTIONS.get(name, (col,))
                else ""
            )
            raise TableError(f"{path}: column {col!r} missing from table {name!r}{hint}")
        if actual[col] != expected[col]:
            raise TableError(
                f"{path}: column {col!r} of {name!r} has dtype {actual[col]}, "
                f"expected {expected[col]}"
            )
    return pl.scan_parquet(path).select(wanted)


def collect(lf: pl.LazyFrame) -> pl.DataFrame:
    """Collect with the streaming engine so large scans run in bounded memory."""
    return lf.collect(engine="streaming")
