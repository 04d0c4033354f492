"""Errors about identifier and date columns name the file, row and column, never the value.

A malformed subject_id or chart time printed in an error would reach the console, the job
log and cluster logs; values of other columns (e.g. valuenum "4,5") are still shown.
"""

from __future__ import annotations

import gzip

import pytest
from mimic_fixtures import lab, write_table

from pipeline.data.convert import ConvertError, convert_table

SECRET_ID = "1234567X"  # what a corrupted subject_id cell could hold
SECRET_TIME = "07/03/2180 10:00"


def _rows(n: int) -> list[dict]:
    return [lab(10_000_000 + i, 50971, "2180-01-01 10:00:00", 4.0, labevent_id=i) for i in range(n)]


@pytest.mark.parametrize(
    ("column", "bad", "row"), [("subject_id", SECRET_ID, 7), ("charttime", SECRET_TIME, 3)]
)
def test_identifier_errors_give_row_and_column_not_value(tmp_path, column, bad, row) -> None:
    rows = _rows(10)
    rows[row - 1] = {**rows[row - 1], column: bad}
    src = write_table(tmp_path / "src", "labevents", rows)
    with pytest.raises(ConvertError) as err:
        convert_table("labevents", src, tmp_path / "o/l.parquet", 100)
    msg = str(err.value)
    assert "labevents.csv.gz" in msg and f"'{column}'" in msg and f"data row {row} " in msg
    assert bad not in msg and bad.split()[0] not in msg


def test_a_malformed_line_is_not_quoted(tmp_path) -> None:
    src = write_table(tmp_path / "src", "labevents", _rows(4))
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()
    lines[2] = "10000777,30000777"  # a truncated line: identifiers, too few fields
    src.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ConvertError) as err:
        convert_table("labevents", src, tmp_path / "o/l.parquet", 100)
    assert "labevents.csv.gz" in str(err.value) and "columns" in str(err.value)
    assert "10000777" not in str(err.value) and "30000777" not in str(err.value)


def test_non_identifier_values_are_still_shown(tmp_path) -> None:
    rows = _rows(10)
    rows[4] = {**rows[4], "valuenum": "4,5"}
    src = write_table(tmp_path / "src", "labevents", rows)
    with pytest.raises(ConvertError, match=r"'valuenum'.*data row 5 .*'4,5'"):
        convert_table("labevents", src, tmp_path / "o/l.parquet", 100)
