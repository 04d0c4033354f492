"""File helpers: atomic writes (outputs appear complete or not at all), modes, digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; rename it onto ``dst`` on success.

    The temporary lives in the same directory so the final ``os.replace`` is atomic
    on POSIX file systems. On any exception the temporary (file or directory) is
    removed and ``dst`` is left untouched, so an interrupted job never leaves a
    partial output that Snakemake or a later stage could mistake for a finished one.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=suffix or ".tmp", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # callers create it (file or directory) themselves
    try:
        yield tmp
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text_atomic(dst: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``dst`` through a temporary file and a rename."""
    with atomic_path(dst) as tmp:
        tmp.write_text(text)


def umask_mode() -> int:
    """The mode a new file gets under this process's umask (0o644 under umask 022).

    For writers that create files with a fixed mode of their own (safetensors: 0o600) or
    copy one (``shutil.copy2``): a model shared on a cluster must be readable by the group
    when the umask says so.
    """
    mask = os.umask(0)
    os.umask(mask)  # reading the umask means setting it: put it back at once
    return 0o666 & ~mask


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (what ``sha256sum`` prints), read in 1 MiB blocks.

    A loop rather than ``hashlib.file_digest``, which needs Python 3.11 (we support 3.10).
    """
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
