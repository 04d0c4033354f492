"""convert_table: typed streaming conversion and clear errors on corrupt input."""

from __future__ import annotations

import datetime as dt
import gzip
import logging

import polars as pl
import pytest
from mimic_fixtures import csv_text, lab, write_table

from pipeline.data.convert import ConvertError, convert_table
from pipeline.mimic_schema import TABLES, polars_schema


def _labevents(n: int) -> list[dict]:
    return [
        lab(
            10000000 + i % 7,
            50971,
            f"2180-01-01 {i % 24:02d}:{i % 60:02d}:00",
            4.0 + i % 3,
            labevent_id=i,
        )
        for i in range(n)
    ]


def _no_leftovers(directory) -> bool:
    return not directory.exists() or not any(directory.iterdir())


def test_roundtrip_types_nulls_quotes(tmp_path):
    src = write_table(
        tmp_path / "src",
        "d_labitems",
        [
            {"itemid": 50885, "label": "Bilirubin, Total", "fluid": "Blood", "category": None},
        ],
    )
    omr = write_table(
        tmp_path / "src",
        "omr",
        [
            {
                "subject_id": 1,
                "chartdate": dt.date(2180, 1, 2),
                "seq_num": 1,
                "result_name": "Blood Pressure",
                "result_value": "110/70",
            },
        ],
    )
    out = tmp_path / "pq"
    stats = convert_table("d_labitems", src, out / "d.parquet", batch_rows=10)
    convert_table("omr", omr, out / "omr.parquet", batch_rows=10)
    df = pl.read_parquet(out / "d.parquet")
    assert df.schema == polars_schema("d_labitems")
    assert df.row(0) == (50885, "Bilirubin, Total", "Blood", None)
    assert stats.rows == 1 and stats.columns_dropped == ()
    o = pl.read_parquet(out / "omr.parquet")
    assert o.schema == polars_schema("omr") and o["chartdate"].item() == dt.date(2180, 1, 2)


def test_streams_many_blocks_with_exact_values(tmp_path):
    rows = _labevents(30_000)
    src = write_table(tmp_path / "src", "labevents", rows)
    stats = convert_table("labevents", src, tmp_path / "l.parquet", batch_rows=1_000)
    df = pl.read_parquet(tmp_path / "l.parquet")
    assert stats.rows == 30_000 and stats.batches > 1  # streamed, not one block
    assert df.schema == polars_schema("labevents")
    assert df["valuenum"].sum() == pytest.approx(sum(r["valuenum"] for r in rows))
    assert df["charttime"][61] == dt.datetime(2180, 1, 1, 13, 1)
    assert df["hadm_id"].null_count() == 30_000  # empty field -> null


def test_extra_column_is_dropped_with_warning(tmp_path, caplog):
    src = tmp_path / "d_labitems.csv.gz"
    text = csv_text(
        [*TABLES["d_labitems"].columns, "loinc_code"],
        [{"itemid": 1, "label": "X", "loinc_code": "123-4"}],
    )
    with gzip.open(src, "wt") as fh:
        fh.write(text)
    with caplog.at_level(logging.WARNING):
        stats = convert_table("d_labitems", src, tmp_path / "d.parquet", batch_rows=10)
    assert stats.columns_dropped == ("loinc_code",) and "loinc_code" in caplog.text
    assert pl.read_parquet(tmp_path / "d.parquet").columns == list(TABLES["d_labitems"].columns)


def test_missing_file(tmp_path):
    with pytest.raises(ConvertError, match=r"labevents\.csv\.gz.*does not exist"):
        convert_table("labevents", tmp_path / "labevents.csv.gz", tmp_path / "o/l.parquet", 10)
    assert _no_leftovers(tmp_path / "o")


def test_missing_labevents_column(tmp_path):
    src = tmp_path / "labevents.csv.gz"
    columns = [c for c in TABLES["labevents"].columns if c != "valuenum"]
    with gzip.open(src, "wt") as fh:
        fh.write(csv_text(columns, [{"labevent_id": 1}]))
    with pytest.raises(ConvertError, match=r"labevents\.csv\.gz.*'valuenum'.*missing"):
        convert_table("labevents", src, tmp_path / "o/l.parquet", 10)
    assert _no_leftovers(tmp_path / "o")


def test_truncated_gzip(tmp_path):
    src = write_table(tmp_path / "src", "labevents", _labevents(50_000))
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ConvertError, match=r"labevents\.csv\.gz.*[Tt]runcated"):
        convert_table("labevents", src, tmp_path / "o/l.parquet", 1_000)
    assert _no_leftovers(tmp_path / "o")


def test_wrong_type_names_column_and_row(tmp_path):
    rows = _labevents(5_000)
    rows[4_321] = {**rows[4_321], "valuenum": "4,5"}
    src = write_table(tmp_path / "src", "labevents", rows)
    with pytest.raises(ConvertError) as err:
        convert_table("labevents", src, tmp_path / "o/l.parquet", 100)
    msg = str(err.value)
    assert "labevents.csv.gz" in msg and "'valuenum'" in msg and "data row 4322" in msg
    assert _no_leftovers(tmp_path / "o")


def test_bad_timestamp_names_column(tmp_path):
    rows = _labevents(10)
    rows[3] = {**rows[3], "charttime": "01/02/2180 10:00"}
    src = write_table(tmp_path / "src", "labevents", rows)
    with pytest.raises(ConvertError, match=r"'charttime'.*data row 4 "):
        convert_table("labevents", src, tmp_path / "o/l.parquet", 100)
