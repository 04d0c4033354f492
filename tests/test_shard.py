"""Sharding WFDB records: values, lead order, quarantine and the shard store."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import wfdb
from scipy.signal import resample_poly

from pipeline.data.ecg_store import ShardStore, resample
from pipeline.data.shard import ShardConfig, merge_shard_groups, shard_group
from pipeline.mimic_schema import LEADS, MISSING_ADC
from tests.wfdb_fixtures import ecg_digital, make_cohort, write_record

CFG = ShardConfig(n_groups=2, shard_size=4, fs_out=100, clip_mv=3.0)


def expected(root: Path, path: str) -> np.ndarray:
    """Independent reference: wfdb read, per-lead interpolation, clip, resample (12, 1000)."""
    r = wfdb.rdrecord(str(root / path))
    x = r.p_signal[:, [r.sig_name.index(lead) for lead in LEADS]].T  # (12, 5000)
    t = np.arange(x.shape[1])
    for lead in x:
        bad = np.isnan(lead)
        if bad.any():
            lead[bad] = np.interp(t[bad], t[~bad], lead[~bad])
    return resample_poly(np.clip(x, -3, 3), 1, 5, axis=-1)


def shard_all(cohort: pl.DataFrame, root: Path, out: Path, cfg: ShardConfig = CFG, **kw):
    cohort_file = out / "cohort.parquet"
    out.mkdir(parents=True, exist_ok=True)
    cohort.write_parquet(cohort_file)
    shards = out / "shards"
    reports = [
        shard_group(cohort_file, root, g, shards / f"group_{g}", cfg, **kw)
        for g in range(cfg.n_groups)
    ]
    merge_shard_groups(
        [shards / f"group_{g}" for g in range(cfg.n_groups)],
        shards / "index.parquet",
        shards / "quarantine.tsv",
    )
    return shards, reports


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ecg")
    cohort, _ = make_cohort(root, 11)
    shards, reports = shard_all(cohort, root, tmp_path_factory.mktemp("out"))
    return root, cohort, shards, reports


def test_round_trip_values_groups_and_index(clean) -> None:
    root, cohort, shards, reports = clean
    index = pl.read_parquet(shards / "index.parquet")
    assert index.schema == pl.Schema({"study_id": pl.Int64, "shard": pl.Utf8, "offset": pl.Int32})
    assert sorted(index["study_id"]) == sorted(cohort["study_id"])
    assert sum(r.n_sharded for r in reports) == 11 and all(r.n_quarantined == 0 for r in reports)
    for sid, shard, offset in index.iter_rows():
        assert shard.startswith(f"group_{sid % 2}/shard_")
        arr = np.load(shards / shard, mmap_mode="r")
        assert 0 <= offset < len(arr)
        assert arr.dtype == np.float16 and arr.shape[1:] == (12, 1000) and len(arr) <= 4
        path = cohort.filter(pl.col("study_id") == sid)["path"][0]
        np.testing.assert_allclose(arr[offset].astype(np.float64), expected(root, path), atol=2e-3)
    assert not index.select("shard", "offset").is_duplicated().any()
    # group 0 has 6 records -> shard files of 4 + 2
    assert sorted(p.name for p in (shards / "group_0").glob("shard_*.npy")) == [
        "shard_00000.npy",
        "shard_00001.npy",
    ]
    assert pl.read_csv(shards / "quarantine.tsv", separator="\t").height == 0


def test_shard_store_get_and_get_many(clean) -> None:
    root, cohort, shards, _ = clean
    store = ShardStore(shards / "index.parquet")
    assert len(store) == 11 and store.ids.dtype == np.int64
    sid = int(store.ids[5])
    one = store.get(sid)
    assert one.dtype == np.float32 and one.shape == (12, 1000)
    path = cohort.filter(pl.col("study_id") == sid)["path"][0]
    np.testing.assert_allclose(one, expected(root, path), atol=2e-3)
    ids = store.ids[[7, 0, 5, 10]]
    many = store.get_many(ids)
    assert many.shape == (4, 12, 1000)
    for i, s in enumerate(ids):
        np.testing.assert_array_equal(many[i], store.get(int(s)))
    with pytest.raises(KeyError, match="12345"):
        store.get(12345)
    clone = pickle.loads(pickle.dumps(store))  # spawned DataLoader workers get no open maps
    assert clone._maps == {}
    np.testing.assert_array_equal(clone.get(sid), one)


def test_workers_wfdb_reader_and_cohort_order_give_identical_shards(clean, tmp_path) -> None:
    """Same bytes with a process pool, with wfdb.rdrecord, and with a shuffled cohort
    carrying a split column: shards depend on the records only."""
    root, cohort, shards, _ = clean
    shuffled = cohort.sample(fraction=1.0, shuffle=True, seed=3).with_columns(fold=pl.lit(7))
    cfg_wfdb = ShardConfig(n_groups=2, shard_size=4, fs_out=100, clip_mv=3.0, reader="wfdb")
    for out, cfg, workers in [(tmp_path / "a", CFG, 2), (tmp_path / "b", cfg_wfdb, 1)]:
        other, _ = shard_all(shuffled, root, out, cfg, workers=workers)
        files = sorted(p.relative_to(shards) for p in shards.rglob("*.npy"))
        assert files == sorted(p.relative_to(other) for p in other.rglob("*.npy"))
        for f in files:
            np.testing.assert_array_equal(np.load(shards / f), np.load(other / f))
        assert pl.read_parquet(other / "index.parquet").equals(
            pl.read_parquet(shards / "index.parquet")
        )


def test_permuted_header_lead_order_is_reordered(tmp_path) -> None:
    root = tmp_path / "ecg"
    cohort, signals = make_cohort(root, 2)
    sid, subj, path = cohort.row(0)[0], cohort.row(0)[1], cohort["path"][0]
    perm = np.random.default_rng(1).permutation(12)
    write_record(root, subj, sid, signals[sid][:, perm], leads=[LEADS[i] for i in perm])
    assert wfdb.rdheader(str(root / path)).sig_name != list(LEADS)
    shards, _ = shard_all(cohort, root, tmp_path / "out", ShardConfig(1, 4, 100, 3.0))
    got = ShardStore(shards / "index.parquet").get(sid)
    np.testing.assert_allclose(got, expected(root, path), atol=2e-3)
    # and against the unpermuted signal, lead by lead
    ref = resample_poly(np.clip(signals[sid].T / 200.0, -3, 3), 1, 5, axis=-1)
    np.testing.assert_allclose(got, ref, atol=2e-3)


def test_corrupted_records_are_quarantined_with_reasons(tmp_path) -> None:
    root = tmp_path / "ecg"
    cohort, signals = make_cohort(root, 12)
    rows = {r["study_id"]: r for r in cohort.iter_rows(named=True)}
    ids = sorted(rows)
    rng = np.random.default_rng(5)

    def rewrite(i: int, d: np.ndarray, **kw) -> None:
        write_record(root, rows[ids[i]]["subject_id"], ids[i], d, **kw)

    base = root / rows[ids[0]]["path"]
    base.with_suffix(".dat").write_bytes(base.with_suffix(".dat").read_bytes()[:60000])
    (root / (rows[ids[1]]["path"] + ".hea")).unlink()
    (root / (rows[ids[2]]["path"] + ".dat")).unlink()
    d = signals[ids[3]].copy()
    d[1000:1100, 2] = MISSING_ADC  # a gap in lead III: interpolated, kept
    rewrite(3, d)
    d = signals[ids[4]].copy()
    d[:, 5] = MISSING_ADC  # all of aVL missing
    rewrite(4, d)
    rewrite(5, ecg_digital(rng, 500), fs=50)  # 10 s, but below fs_out
    rewrite(6, signals[ids[6]], leads=[*LEADS[:11], "V7"])
    d = signals[ids[7]].copy()
    d[:, 8] = 17  # flat V3
    rewrite(7, d)
    rewrite(8, signals[ids[8]][:4000])
    shards, reports = shard_all(cohort, root, tmp_path / "out")

    q = pl.read_csv(shards / "quarantine.tsv", separator="\t")
    reason = dict(zip(q["study_id"], q["reason"], strict=True))
    assert reason[ids[0]].startswith("truncated_signal")
    name = Path(rows[ids[1]]["path"]).name
    assert reason[ids[1]] == f"missing_header: {name}.hea not found"
    name = Path(rows[ids[2]]["path"]).name
    assert reason[ids[2]] == f"missing_signal: {name}.dat not found (named in {name}.hea)"
    assert reason[ids[4]] == "all_nan_lead: aVL"
    assert reason[ids[5]].startswith("sampling_frequency: 50 Hz")
    assert reason[ids[6]].startswith("missing_lead: V6 (expected I, II")
    assert reason[ids[7]] == "flat_lead: V3"
    assert reason[ids[8]].startswith("length: 4000")
    assert len(reason) == 8
    assert set(q["path"]) == {rows[ids[i]]["path"] for i in (0, 1, 2, 4, 5, 6, 7, 8)}

    index = pl.read_parquet(shards / "index.parquet")
    assert sorted([*index["study_id"], *q["study_id"]]) == ids  # nothing disappears
    kept = ShardStore(shards / "index.parquet").get(ids[3])
    assert np.isfinite(kept).all()
    np.testing.assert_allclose(kept, expected(root, rows[ids[3]]["path"]), atol=2e-3)
    assert sum(r.n_quarantined for r in reports) == 8
    assert sum(r.reasons.get("truncated_signal", 0) for r in reports) == 1


def test_header_time_mismatch_is_kept_and_counted(tmp_path) -> None:
    root = tmp_path / "ecg"
    cohort, _ = make_cohort(root, 4)
    late = cohort["study_id"][0]
    cohort = cohort.with_columns(
        ecg_time=pl.when(pl.col("study_id") == late)
        .then(pl.col("ecg_time") + timedelta(hours=2))
        .otherwise(pl.col("ecg_time") + timedelta(seconds=30))  # within tolerance
    )
    _, reports = shard_all(cohort, root, tmp_path / "out", ShardConfig(1, 4, 100, 3.0))
    assert reports[0].n_sharded == 4 and reports[0].n_time_mismatch == 1


def test_all_quarantined_group_and_bad_root_fail_loudly(tmp_path) -> None:
    root = tmp_path / "ecg"
    cohort, _ = make_cohort(root, 2)
    for p in cohort["path"]:
        (root / (p + ".dat")).unlink()
    with pytest.raises(RuntimeError, match=r"all 2 records quarantined.*missing_signal"):
        shard_all(cohort, root, tmp_path / "out", ShardConfig(1, 4, 100, 3.0))
    assert not (tmp_path / "out" / "shards" / "group_0").exists()  # nothing partial left
    with pytest.raises(FileNotFoundError, match="nowhere"):
        shard_all(cohort, tmp_path / "nowhere", tmp_path / "out", ShardConfig(1, 4, 100, 3.0))
    with pytest.raises(ValueError, match=r"shard\.fs_out=100"):
        ShardConfig(1, 4, 100, 3.0, n_samples=4999)


@pytest.mark.parametrize(("fs_out", "n"), [(100, 5000), (250, 5000), (50, 4999), (200, 5000)])
def test_resample_equals_resample_poly(fs_out: int, n: int) -> None:
    x = np.random.default_rng(fs_out).normal(size=(3, 12, n)).astype(np.float32)
    got = resample(x, 500, fs_out)
    want = resample_poly(x.astype(np.float64), fs_out, 500, axis=-1)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
