"""convert_table's fast path: column projection, ISA-L inflater and its zlib fallback."""

from __future__ import annotations

import gzip
import io
import os

import polars as pl
import pytest
from mimic_fixtures import lab, write_table

import pipeline.data.convert as convert
import pipeline.data.csvstream as csvstream
from pipeline.data.convert import ConvertError, convert_table, projection_of
from pipeline.data.tables import TableError, scan
from pipeline.mimic_schema import PROJECTIONS, TABLES, polars_schema

KEPT = list(PROJECTIONS["labevents"])


def _rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        when = f"2180-01-{1 + i % 28:02d} 0{i % 10}:15:00"
        row = lab(10000000 + i % 11, 50800 + i % 9, when, 0.5 * i)
        row |= {"labevent_id": i, "ref_range_lower": 1.0 if i % 3 else None, "ref_range_upper": 9.5}
        row["comments"] = 'see "note", then ___' if i % 5 == 0 else None  # quoted, commas
        rows.append(row)
    return rows


@pytest.fixture
def source(tmp_path):
    return write_table(tmp_path / "src", "labevents", _rows(3_000))


def _oracle(src) -> pl.DataFrame:
    """An independent reader: polars over the whole inflated file."""
    return pl.read_csv(gzip.decompress(src.read_bytes()), schema=polars_schema("labevents"))


def test_projection_keeps_used_columns_with_identical_values(tmp_path, source, monkeypatch):
    monkeypatch.setattr(convert, "_PIECE", 1 << 12)  # many pieces, parsed out of order
    stats = convert_table("labevents", source, tmp_path / "p.parquet", 200, projection=True)
    got = pl.read_parquet(tmp_path / "p.parquet")
    assert got.columns == KEPT and stats.rows == 3_000 and stats.batches > 1
    assert got.equals(_oracle(source).select(KEPT))
    label = projection_of(tmp_path / "p.parquet")
    assert label is not None and label["columns"] == KEPT
    assert set(label["omitted"]) == set(TABLES["labevents"].columns) - set(KEPT)


def test_full_conversion_is_unlabelled_and_matches_projection(tmp_path, source):
    convert_table("labevents", source, tmp_path / "f.parquet", 200)
    convert_table("labevents", source, tmp_path / "p.parquet", 200, projection=True)
    full = pl.read_parquet(tmp_path / "f.parquet")
    assert projection_of(tmp_path / "f.parquet") is None
    assert full.equals(_oracle(source))
    assert full.select(KEPT).equals(pl.read_parquet(tmp_path / "p.parquet"))
    # tables other than those in PROJECTIONS are never cut
    d = write_table(tmp_path / "src", "d_labitems", [{"itemid": 1, "label": "K", "fluid": "Blood"}])
    convert_table("d_labitems", d, tmp_path / "d.parquet", 10, projection=True)
    assert projection_of(tmp_path / "d.parquet") is None


def test_zlib_fallback_gives_the_same_parquet(tmp_path, source, monkeypatch):
    convert_table("labevents", source, tmp_path / "isal.parquet", 200, projection=True)
    monkeypatch.setattr(csvstream, "igzip_threaded", None)
    convert_table("labevents", source, tmp_path / "zlib.parquet", 200, projection=True)
    a, b = (pl.read_parquet(tmp_path / f"{n}.parquet") for n in ("isal", "zlib"))
    assert a.equals(b)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConvertError, match=r"labevents\.csv\.gz.*[Tt]runcated"):
        convert_table("labevents", source, tmp_path / "o" / "t.parquet", 200, projection=True)


def test_projected_wrong_type_still_names_column_and_row(tmp_path):
    rows = _rows(2_000)
    rows[1_234] = {**rows[1_234], "valuenum": "4,5"}
    src = write_table(tmp_path / "src", "labevents", rows)
    with pytest.raises(ConvertError) as err:
        convert_table("labevents", src, tmp_path / "o" / "l.parquet", 100, projection=True)
    assert "'valuenum'" in str(err.value) and "data row 1235" in str(err.value)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_corrupt_deflate_stream_is_a_convert_error(tmp_path, source):
    data = bytearray(source.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)  # damage the middle
    source.write_bytes(bytes(data))
    with pytest.raises(ConvertError, match=r"labevents\.csv\.gz"):
        convert_table("labevents", source, tmp_path / "o" / "l.parquet", 200, projection=True)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_reading_an_omitted_column_says_projection(tmp_path, source):
    convert_table("labevents", source, tmp_path / "p.parquet", 200, projection=True)
    tables = {"labevents": tmp_path / "p.parquet"}
    assert scan(tables, "labevents", KEPT).collect().height == 3_000
    with pytest.raises(TableError, match=r"'hadm_id' missing.*projection"):
        scan(tables, "labevents", ["subject_id", "hadm_id"])


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 16])
def test_pieces_are_line_aligned_and_lose_nothing(size):
    body = b"".join(b"%d,x%d,%s\r\n" % (i, i * 7, b"y" * (i % 13)) for i in range(300))
    for tail in (b"", b"9,last,no-newline"):
        got = list(csvstream.pieces(io.BytesIO(b"a,b,c\n" + body + tail), size))
        assert b"".join(got) == body + tail
        assert all(p.endswith(b"\n") for p in got[: len(got) - bool(tail)])
    assert list(csvstream.pieces(io.BytesIO(b"a,b,c"), size)) == []  # header only
