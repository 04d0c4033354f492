"""Shard file sizes and SHA-256 hashes: recorded when a shard is written, checked when read.

The shard stage records every shard file's byte size and SHA-256 (the digest
``sha256sum`` prints) in the ``index.parquet`` file metadata (key ``ecg_explain.shards``:
relative name -> ``[bytes, sha256]``), in the group index and in the merged one. Because
the hashes are part of the merged index, a shard whose content changes gives a different
index file, which Snakemake sees as a changed input of every stage that reads the shards;
an identical rebuild gives an identical index (Snakemake then re-runs nothing, for
indexes under its 1 MB checksum limit).

:func:`verify_shards` (called when a :class:`~pipeline.data.ecg_store.ShardStore` opens)
checks every listed file's size (a ``stat``), and its hash once per process per file
version (path, size, mtime, inode): hashing reads each shard once, about the cost of one
pass of reading the shards, where training reads them once per epoch (``bench/shard.py``
measures the ratio). Any mismatch raises :class:`ShardError`: one line with the path,
what the index expects, what was found and the command that rebuilds the shard group.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.io import file_sha256
from pipeline.stops import ExpectedStop

log = logging.getLogger(__name__)

METADATA_KEY = "ecg_explain.shards"

#: (resolved path, size, mtime_ns, inode) of shard files whose hash this process checked.
_VERIFIED: set[tuple[str, int, int, int]] = set()
_WARNED: set[str] = set()  # indexes without sizes and hashes, warned about once per process


class ShardError(ExpectedStop, ValueError):
    """A shard file that disagrees with its index (the message is one line; the console
    shows it without a traceback, the job log keeps one)."""


@dataclass(frozen=True)
class ShardEntry:
    """What the index records about one shard file."""

    size: int  # bytes
    sha256: str  # hex digest


def describe(path: Path) -> ShardEntry:
    """Size and hash of a shard file just written."""
    return ShardEntry(path.stat().st_size, file_sha256(path))


def shards_metadata(entries: Mapping[str, ShardEntry]) -> dict[bytes, bytes]:
    """Parquet key-value metadata carrying ``entries`` (sorted: the bytes are reproducible)."""
    table = {name: [e.size, e.sha256] for name, e in sorted(entries.items())}
    return {METADATA_KEY.encode(): json.dumps(table, separators=(",", ":")).encode()}


def read_shard_entries(index: Path) -> dict[str, ShardEntry] | None:
    """The entries recorded in a shard ``index.parquet`` (None: an index without them)."""
    raw = (pq.read_schema(index).metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        return None
    return {name: ShardEntry(int(size), str(h)) for name, (size, h) in json.loads(raw).items()}


def rebuild_command(group_dir: Path) -> str:
    """The command that rebuilds one shard group and the merged index (nothing downstream).

    An identical rebuild leaves the merged index byte-identical, so the next run re-trains
    nothing; a rebuild that differs changes the index, so what depends on it re-runs.
    """
    return f"snakemake --cores all --forcerun {group_dir} --until merge_shards"


def legacy_message(index: Path) -> str:
    """What an index without sizes and hashes means, and the command that records them."""
    return (
        f"{index}: no shard sizes and hashes recorded (written by an earlier version), so "
        "shard contents are not checked; to record them, re-shard with: "
        "snakemake --cores all --forcerun shard_ecg (re-runs what reads the shards)"
    )


def npy_size(path: Path, index: Path) -> int:
    """The byte size a ``.npy`` file's own header implies (header + shape x item size).

    The check left for an index without recorded sizes: it finds truncated and emptied
    shards, not changed values.
    """
    fix = f"rebuild with: {rebuild_command(path.parent)}"
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            return fh.tell() + math.prod(shape) * dtype.itemsize
    except FileNotFoundError:
        raise ShardError(f"shard {path} (listed in {index}) is missing; {fix}") from None
    except (ValueError, EOFError, OSError) as err:
        raise ShardError(f"shard {path}: not a readable .npy file ({err}); {fix}") from None


def check_size(path: Path, entry: ShardEntry, index: Path) -> os.stat_result:
    """Raise :class:`ShardError` unless ``path`` exists with the recorded size."""
    fix = f"rebuild with: {rebuild_command(path.parent)}"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ShardError(f"shard {path} (listed in {index}) is missing; {fix}") from None
    if st.st_size != entry.size:
        raise ShardError(f"shard {path}: {st.st_size} bytes, {index} expects {entry.size}; {fix}")
    return st


def check_hash(path: Path, entry: ShardEntry, index: Path) -> None:
    """Raise :class:`ShardError` unless ``path`` hashes to the recorded SHA-256."""
    found = file_sha256(path)
    if found != entry.sha256:
        raise ShardError(
            f"shard {path}: sha256 {found[:16]}..., {index} expects {entry.sha256[:16]}... "
            f"(same size: the content changed); rebuild with: {rebuild_command(path.parent)}"
        )


def verify_shards(index: Path, names: Iterable[str], *, hashes: bool = True) -> None:
    """Check the shard files ``names`` (relative to the index's directory) against ``index``.

    Args:
        index: the shard ``index.parquet`` (group or merged).
        names: the shard names to check (those the index rows use).
        hashes: also compare SHA-256 (each file version once per process); False checks
            sizes only.

    An index written before sizes and hashes were recorded gets a warning and the sizes
    the files' own ``.npy`` headers imply (truncated and emptied files are still found).

    Raises:
        ShardError: a file is missing, unreadable, of another size or (with ``hashes``) of
            another content.
    """
    entries = read_shard_entries(index)
    if entries is None:  # an earlier version's index: what the .npy headers say, and a warning
        if str(index) not in _WARNED:
            log.warning(legacy_message(index))
            _WARNED.add(str(index))
        entries = {n: ShardEntry(npy_size(index.parent / n, index), "") for n in names}
        hashes = False
    for name in names:
        entry = entries.get(name)
        path = index.parent / name
        if entry is None:
            raise ShardError(f"{index}: no size or hash recorded for shard {name}")
        st = check_size(path, entry, index)
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        if hashes and key not in _VERIFIED:
            check_hash(path, entry, index)
            _VERIFIED.add(key)
