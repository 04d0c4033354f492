"""The shard index tables: writing a group's index and quarantine, and merging the groups.

``index.parquet`` (study_id -> shard, offset) carries two records in its file metadata:
the preprocessing (:mod:`pipeline.data.preprocessing`) and every shard file's size and
SHA-256 (:mod:`pipeline.data.shard_check`). ``quarantine.tsv`` lists the records that
could not be used, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline.data.preprocessing import Preprocessing, index_metadata, read_index_preprocessing
from pipeline.data.shard_check import (
    ShardEntry,
    ShardError,
    check_size,
    read_shard_entries,
    rebuild_command,
    shards_metadata,
)
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

INDEX_SCHEMA = {"study_id": pl.Int64, "shard": pl.Utf8, "offset": pl.Int32}
QUARANTINE_SCHEMA = {"study_id": pl.Int64, "path": pl.Utf8, "reason": pl.Utf8}


def write_index(
    index: pl.DataFrame, path: Path, prep: Preprocessing, entries: dict[str, ShardEntry]
) -> None:
    """index.parquet with the preprocessing and the shard sizes and hashes in its file
    metadata (read by training; :mod:`pipeline.data.shard_check`)."""
    meta = {**index_metadata(prep), **shards_metadata(entries)}
    pq.write_table(index.to_arrow().replace_schema_metadata(meta), path)


def write_tables(
    tmp: Path,
    index: list[tuple[int, str, int]],
    quarantine: list[tuple[int, str, str]],
    prep: Preprocessing,
    entries: dict[str, ShardEntry],
) -> None:
    """A group's index.parquet and quarantine.tsv inside ``tmp``."""
    frame = pl.DataFrame(index, schema=INDEX_SCHEMA, orient="row")
    write_index(frame, tmp / "index.parquet", prep, entries)
    q = pl.DataFrame(quarantine, schema=QUARANTINE_SCHEMA, orient="row").sort("study_id")
    q.write_csv(tmp / "quarantine.tsv", separator="\t")


def _group_entries(group_dir: Path, root: Path) -> dict[str, ShardEntry]:
    """A group's shard sizes and hashes, its files' sizes checked (a ``stat`` each)."""
    entries = read_shard_entries(group_dir / "index.parquet")
    if entries is None:
        raise ShardError(
            f"{group_dir / 'index.parquet'}: no shard sizes and hashes recorded (written by "
            f"an earlier version); rebuild with: {rebuild_command(group_dir)}"
        )
    for name, entry in entries.items():
        check_size(root / name, entry, group_dir / "index.parquet")
    return entries


def merge_shard_groups(
    group_dirs: Sequence[Path], index_out: Path, quarantine_out: Path
) -> tuple[int, int]:
    """Merge the per-group indexes and quarantines (rule ``merge_shards``).

    Args:
        group_dirs: the ``group_{g}`` directories, all beside ``index_out``.
        index_out: merged index.parquet (study_id, shard, offset), sorted by study_id.
        quarantine_out: merged quarantine.tsv (study_id, path, reason).

    Returns:
        (records in the index, records quarantined).
    """
    index_out, quarantine_out = Path(index_out), Path(quarantine_out)
    idx, qua, preps = [], [], set()
    entries: dict[str, ShardEntry] = {}
    for d in map(Path, group_dirs):
        if d.parent.resolve() != index_out.parent.resolve():
            raise ValueError(f"{d}: shard groups must sit beside {index_out} (relative paths)")
        for name in ("index.parquet", "quarantine.tsv"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} missing: incomplete shard group")
        idx.append(pl.read_parquet(d / "index.parquet").cast(INDEX_SCHEMA))  # type: ignore[arg-type]
        preps.add(read_index_preprocessing(d / "index.parquet"))
        entries.update(_group_entries(d, index_out.parent))
        qua.append(pl.read_csv(d / "quarantine.tsv", separator="\t", schema=QUARANTINE_SCHEMA))
    index = pl.concat([pl.DataFrame(schema=INDEX_SCHEMA), *idx]).sort("study_id")
    quarantine = pl.concat([pl.DataFrame(schema=QUARANTINE_SCHEMA), *qua]).sort("study_id")
    if pl.concat([index["study_id"], quarantine["study_id"]]).is_duplicated().any():
        raise ValueError(f"{index_out}: a study_id appears in two shard groups or twice")
    if len(preps) != 1 or None in preps:  # groups written by different settings or code
        raise ValueError(
            f"{index_out}: shard groups carry different (or no) preprocessing metadata, "
            "i.e. were written with other settings or by an older version; re-run shard_ecg"
        )
    with atomic_path(index_out, suffix=".parquet") as tmp:
        write_index(index, tmp, preps.pop(), entries)  # type: ignore[arg-type]
    with atomic_path(quarantine_out, suffix=".tsv") as tmp:
        quarantine.write_csv(tmp, separator="\t")
    log.info(
        "merged %d group(s): %d records, %d quarantined", len(idx), index.height, quarantine.height
    )
    return index.height, quarantine.height
