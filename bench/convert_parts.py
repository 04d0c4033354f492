"""Where conversion time goes, and the inflate + tokenise ceiling (used by bench/extract.py).

Each part is measured alone on one labevents csv.gz, in wall and CPU seconds (CPU is the
figure that survives other jobs on a shared machine):

- inflate: Arrow's zlib (the converter before issue 11) and ISA-L in its own thread
  (:func:`pipeline.data.csvstream.open_source`), read to the end and discarded;
- tokenise: Arrow parsing the already-inflated file with one integer column kept, all
  threads (every field is still split, quotes and all; converting one column is noise);
- type: Arrow's streaming reader keeping all 16 columns or the 6 of the projection, minus
  the same reader keeping one column (so reader overheads cancel);
- encode: parquet (zstd) encoding of those typed blocks, timed on the writing thread;
- pipe: inflate and tokenise together as our converter runs them (inflater thread,
  parsing threads) with nothing else: the ceiling a streaming converter can reach.

Also the converter of main before issue 11 (Arrow's streaming reader over Arrow's zlib
stream, all columns, one parquet row group per block) for the baseline in the same run.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.data.convert import _kept_columns
from pipeline.data.csvstream import open_source, read_batches

_READ = 1 << 20


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn: Callable[[], object]) -> dict:
    t0, c0 = time.monotonic(), _cpu()
    fn()
    return {"s": time.monotonic() - t0, "cpu_s": _cpu() - c0}


def _options(columns: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=columns,
        include_columns=list(columns),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        timestamp_parsers=[pacsv.ISO8601],
    )


def convert_before(table: str, src: Path, dst: Path) -> None:
    """The converter of main before issue 11 (16 MiB blocks, as bench/extract.py used)."""
    columns = _kept_columns(table, projection=False)
    stream = pa.input_stream(str(src), compression="detect")
    read = pacsv.ReadOptions(block_size=1 << 24, use_threads=True)
    reader = pacsv.open_csv(stream, read_options=read, convert_options=_options(columns))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(dst, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)


def _drain(stream) -> int:
    n = 0
    with stream:
        while block := stream.read(_READ):
            n += len(block)
    return n


def _inflate_to(src: Path, dst: Path) -> None:
    with open_source(src) as stream, dst.open("wb") as out:
        while block := stream.read(_READ):
            out.write(block)


def _type_and_encode(raw: Path, columns: dict[str, pa.DataType], out: Path) -> dict:
    """Stream-parse ``raw`` keeping ``columns`` and write parquet; split the CPU."""
    t0, c0, encode = time.monotonic(), _cpu(), 0.0
    read = pacsv.ReadOptions(block_size=1 << 24, use_threads=True)
    reader = pacsv.open_csv(str(raw), read_options=read, convert_options=_options(columns))
    with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
        for batch in reader:
            e0 = time.thread_time()  # the writer encodes on this thread
            writer.write_batch(batch)
            encode += time.thread_time() - e0
    return {"s": time.monotonic() - t0, "cpu_s": _cpu() - c0, "encode_cpu_s": encode}


def measure(src: Path, work: Path) -> dict:
    """All parts for one labevents csv.gz (writes and removes an inflated copy)."""
    raw, out = work / "labevents.csv", work / "parts.parquet"
    one = {"itemid": pa.int64()}
    with open_source(src) as stream:
        header = stream.readline().decode().strip().split(",")
    cores = len(os.sched_getaffinity(0))
    parts = {
        "inflate_zlib": _timed(lambda: _drain(pa.input_stream(str(src), compression="gzip"))),
        "inflate_isal": _timed(lambda: _drain(open_source(src))),
    }
    _inflate_to(src, raw)
    parts["inflated_mb"] = raw.stat().st_size / 1e6
    read = pacsv.ReadOptions(block_size=1 << 20, use_threads=True)
    parts["tokenise"] = _timed(
        lambda: pacsv.read_csv(str(raw), read_options=read, convert_options=_options(one))
    )
    parts["pipe"] = _timed(
        lambda: sum(b.num_rows for b in read_batches(src, header, _options(one), 1 << 20, cores))
    )
    parts["tokenise_stream"] = _type_and_encode(raw, one, out)
    for name, projection in (("all", False), ("projection", True)):
        parts[f"typed_{name}"] = _type_and_encode(raw, _kept_columns("labevents", projection), out)
    raw.unlink()
    out.unlink()
    return parts
