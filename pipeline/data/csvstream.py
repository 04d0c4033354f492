"""Parse a csv(.gz) on all cores in bounded memory: inflate in one thread, parse in others.

Arrow's streaming CSV reader parses its blocks in the thread that consumes them: on
labevents three quarters of the conversion CPU ran on one thread, so a second core sat
idle. Here the inflater (ISA-L's, 3x less CPU than zlib, in a thread of its own; Arrow's
zlib when ``isal`` is not installed) fills newline-aligned pieces, a thread pool parses
them with Arrow (which releases the GIL), and the caller receives the parsed pieces in
file order. At most ``workers + 1`` pieces are in flight, so memory does not grow with
the file.

Like Arrow's own block reader (``newlines_in_values=False``, the default the converter
always used), a quoted value may not contain a line break: MIMIC's tables have none.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import IO

import pyarrow as pa
import pyarrow.csv as pacsv

# What reading a corrupt or truncated source raises (Arrow's, or the inflater's own).
READ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, pa.ArrowException)
igzip_threaded: ModuleType | None
try:  # optional: ISA-L's inflater; Arrow's zlib is the fallback
    from isal import igzip_threaded, isal_zlib

    READ_ERRORS += (isal_zlib.error,)  # type: ignore[operator]
except ImportError:  # pragma: no cover - depends on the environment
    igzip_threaded = None

# Inflated bytes per hand-off of the inflater thread (isal's default is 1 MiB); larger
# blocks mean fewer GIL round trips between it and the reading thread.
INFLATE_BLOCK = 1 << 22
# Arrow's internal block within one piece (pieces larger than this parse in several).
PARSE_BLOCK = 1 << 20


def open_source(src: Path) -> IO[bytes] | pa.NativeFile:
    """The file's bytes, inflated in a thread of its own if it is a gzip."""
    if src.suffix != ".gz":
        return pa.input_stream(str(src))
    if igzip_threaded is None:
        return pa.input_stream(str(src), compression="gzip")
    return igzip_threaded.open(src, "rb", threads=1, block_size=INFLATE_BLOCK)


def pieces(stream: IO[bytes] | pa.NativeFile, size: int) -> Iterator[bytes]:
    """Newline-aligned pieces of about ``size`` bytes, the header line left out."""
    carry, in_header = b"", True
    while block := stream.read(size):
        block = carry + block
        if in_header:
            start = block.find(b"\n") + 1
            if start == 0:  # the header is longer than one read
                carry = block
                continue
            block, in_header = block[start:], False
        cut = block.rfind(b"\n") + 1
        carry = block[cut:]
        if cut:
            yield block[:cut]
    if carry.strip() and not in_header:  # last line without a line break
        yield carry


def read_batches(
    src: Path,
    header: list[str],
    convert: pacsv.ConvertOptions,
    piece_size: int,
    workers: int,
) -> Iterator[pa.RecordBatch]:
    """The parsed record batches of ``src``, in file order.

    Args:
        src: a csv or csv.gz with a header row.
        header: the header's column names (the pieces carry no header).
        convert: Arrow's conversion options (column types, included columns, nulls).
        piece_size: bytes per piece handed to a parsing thread.
        workers: parsing threads.

    Raises:
        OSError, EOFError, pyarrow.ArrowException, isal's error: see
        :data:`READ_ERRORS`; a parse error is raised for the first bad piece in order.
    """
    read = pacsv.ReadOptions(
        column_names=header, use_threads=False, block_size=min(PARSE_BLOCK, piece_size)
    )

    def parse(piece: bytes) -> pa.Table:
        return pacsv.read_csv(pa.py_buffer(piece), read_options=read, convert_options=convert)

    pending: collections.deque[Future[pa.Table]] = collections.deque()
    with open_source(src) as stream, ThreadPoolExecutor(max(workers, 1)) as pool:
        try:
            for piece in pieces(stream, piece_size):
                pending.append(pool.submit(parse, piece))
                if len(pending) > workers:
                    yield from pending.popleft().result().to_batches()
            while pending:
                yield from pending.popleft().result().to_batches()
        finally:
            for future in pending:  # stop early (error, or a caller that stops reading)
                future.cancel()
