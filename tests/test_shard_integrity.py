"""Shard sizes and hashes: recorded by the shard stage, checked by the store training reads."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.data.shard import merge_shard_groups, shard_group
from pipeline.data.shard_check import ShardError, read_shard_entries
from pipeline.train.data import open_store
from tests.test_shard import CFG, shard_all
from tests.wfdb_fixtures import make_cohort, write_record


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(ECG root, output dir with cohort.parquet and shards/) for 11 records, 2 groups."""
    root = tmp_path_factory.mktemp("ecg")
    cohort, _ = make_cohort(root, 11)
    out = tmp_path_factory.mktemp("out")
    shard_all(cohort, root, out)
    return root, out


def copy_shards(built: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the shards (tests damage it); returns its merged index."""
    shutil.copytree(built[1] / "shards", tmp_path / "shards")
    return tmp_path / "shards" / "index.parquet"


def merge(shards: Path) -> bytes:
    groups = sorted(shards.glob("group_*"))
    merge_shard_groups(groups, shards / "index.parquet", shards / "quarantine.tsv")
    return (shards / "index.parquet").read_bytes()


def test_index_records_each_shard_size_and_sha256(built) -> None:
    shards = built[1] / "shards"
    merged = read_shard_entries(shards / "index.parquet")
    files = sorted(p.relative_to(shards).as_posix() for p in shards.glob("group_*/*.npy"))
    assert merged is not None and sorted(merged) == files and len(files) >= 4
    for name, entry in merged.items():
        data = (shards / name).read_bytes()
        assert entry.size == len(data)
        assert entry.sha256 == hashlib.sha256(data).hexdigest()  # what sha256sum prints
    group = read_shard_entries(shards / "group_0" / "index.parquet")
    assert group and group == {k: v for k, v in merged.items() if k.startswith("group_0/")}


def test_rebuilt_group_gives_the_same_index_bytes_and_changed_signal_a_new_one(
    built, tmp_path: Path
) -> None:
    """Snakemake re-runs what reads the index only when its bytes change (checksum)."""
    root, out = built
    index = copy_shards(built, tmp_path)
    before = index.read_bytes()
    group = index.parent / "group_1"
    shard_group(out / "cohort.parquet", root, 1, group, CFG)  # an identical rebuild
    assert merge(index.parent) == before
    sid = pq.read_table(group / "index.parquet").column("study_id")[0].as_py()
    cohort = pq.read_table(out / "cohort.parquet").to_pylist()
    subject = next(r["subject_id"] for r in cohort if r["study_id"] == sid)
    changed = shutil.copytree(root, tmp_path / "ecg")
    signal = np.random.default_rng(9).integers(-300, 300, (5000, 12)).astype(np.int16)
    write_record(changed, subject, sid, signal)  # one record of group 1, new values
    shard_group(out / "cohort.parquet", changed, 1, group, CFG)
    assert merge(index.parent) != before


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # same size, second half zeroed
        path.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))


@pytest.mark.parametrize("how", ["truncated", "empty", "zeroed"])
def test_damaged_shard_stops_the_store_naming_file_sizes_and_rebuild(
    built, tmp_path: Path, how: str
) -> None:
    index = copy_shards(built, tmp_path)
    shard = index.parent / "group_1" / "shard_00001.npy"
    size = shard.stat().st_size
    _damage(shard, how)
    with pytest.raises(ShardError) as err:
        open_store(index)  # what training, evaluation and the probe open
    msg = str(err.value)
    assert "\n" not in msg and str(shard) in msg and str(index) in msg
    found = {"truncated": size // 2, "empty": 0, "zeroed": size}[how]
    if how == "zeroed":
        assert "sha256" in msg and "content changed" in msg
    else:
        assert f"{found} bytes, {index} expects {size}" in msg
    group = index.parent / "group_1"
    assert msg.endswith(f"snakemake --cores all --forcerun {group} --until merge_shards")


def test_sizes_only_and_each_file_version_hashed_once_per_process(built, tmp_path) -> None:
    index = copy_shards(built, tmp_path)
    store = open_store(index)  # hashes checked
    first = store.get_many(store.ids)
    shard = index.parent / "group_0" / "shard_00000.npy"
    _damage(shard, "zeroed")
    from pipeline.data.ecg_store import ShardStore

    ShardStore(index, hashes=False)  # sizes only: the zeroed half passes
    with pytest.raises(ShardError, match="sha256"):
        open_store(index)  # the file changed since its hash was checked: checked again
    shutil.copy(built[1] / "shards" / "group_0" / "shard_00000.npy", shard)
    np.testing.assert_array_equal(open_store(index).get_many(store.ids), first)


def test_index_without_hashes_warns_and_still_finds_truncation(built, tmp_path, caplog) -> None:
    """An earlier version's index: a warning, and the .npy headers' sizes are checked."""
    index = copy_shards(built, tmp_path)
    table = pq.read_table(index)
    pq.write_table(table.replace_schema_metadata({}), index)  # as an earlier version wrote
    store = open_store(index)
    assert len(store.get_many(store.ids)) == len(store)
    assert "no shard sizes and hashes recorded (written by an earlier version)" in caplog.text
    assert "snakemake --cores all --forcerun shard_ecg" in caplog.text
    shard = index.parent / "group_0" / "shard_00000.npy"
    for how in ("truncated", "empty"):
        _damage(shard, how)
        with pytest.raises(ShardError, match=re.escape(f"shard {shard}: ")):
            open_store(index)


def test_merge_refuses_a_truncated_shard(built, tmp_path) -> None:
    index = copy_shards(built, tmp_path)
    shard = index.parent / "group_0" / "shard_00000.npy"
    _damage(shard, "truncated")
    with pytest.raises(ShardError, match=re.escape(f"shard {shard}: ") + r"\d+ bytes"):
        merge(index.parent)
