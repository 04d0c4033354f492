"""Reading any standard 12-lead WFDB record: spellings, extra channels, rates, paths, refusals.

The same reader serves the shard stage and inference; the shard tests at the end check
that a non-MIMIC export goes through ``shard_group`` like a MIMIC record, and that the
quarantine summary is logged once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.signal import resample_poly

from pipeline.data.ecg_store import RecordError, ShardStore, load_checked, prepare, read_record
from pipeline.data.leads import canonical_lead
from pipeline.data.preprocessing import read_index_preprocessing
from pipeline.data.shard import ShardConfig, merge_shard_groups, shard_group
from pipeline.mimic_schema import ADC_GAIN, LEADS
from tests.wfdb_fixtures import ecg_digital, make_cohort, write_record

# GE MUSE capitals for the augmented leads, lower case for the others
RESPELLED = [{"aVR": "AVR", "aVL": "AVL", "aVF": "AVF"}.get(n, n.lower()) for n in LEADS]
EXTRA = ["Pacer", "RHYTHM II", "V4R"]


def model_input(base: Path | str) -> np.ndarray:
    """(12, 1000) float32 as the shards store it (the 100 Hz model rate)."""
    rec = load_checked(base, 500, 5000, min_fs=100)
    return prepare([rec], 100, 3.0, 1000)[0].astype(np.float32)


def foreign_export(root: Path, d500: np.ndarray, fs: int = 1000) -> Path:
    """The same ECG as another vendor writes it: respelled, extra channels, another rate."""
    up = resample_poly(d500.astype(np.float64) / ADC_GAIN, fs, 500, axis=0)  # (T', 12) mV
    rng = np.random.default_rng(3)
    extra = rng.normal(0, 0.1, (up.shape[0], len(EXTRA)))
    order = rng.permutation(len(LEADS) + len(EXTRA))
    mv = np.concatenate([up, extra], axis=1)[:, order]
    names = [*RESPELLED, *EXTRA]
    d = np.round(mv * ADC_GAIN).astype(np.int16)
    write_record(root, 10000001, 41000000, d, leads=[names[i] for i in order], fs=fs)
    return next(root.rglob("41000000.hea")).with_suffix("")


@pytest.mark.parametrize(
    ("name", "lead"),
    [("aVR", "aVR"), ("AVR", "aVR"), ("avr", "aVR"), ("aVl", "aVL"), ("ii", "II"),
     ("Lead III", "III"), ("DII", "II"), ("v1", "V1"), (" V6 ", "V6"), ("V7", None),
     ("MLII", None), ("", None)],
)  # fmt: skip
def test_lead_names_any_case_and_usual_aliases(name: str, lead: str | None) -> None:
    assert canonical_lead(name) == lead


def test_respelled_extra_channel_1000_hz_record_reads_like_the_original(tmp_path: Path) -> None:
    d = ecg_digital(np.random.default_rng(0))
    write_record(tmp_path / "orig", 10000001, 40000000, d)
    original = next((tmp_path / "orig").rglob("40000000.hea")).with_suffix("")
    foreign = foreign_export(tmp_path / "muse", d)
    rec = read_record(foreign, 500, 5000, min_fs=100)
    assert rec.fs == 1000 and rec.signal.shape == (12, 10000)
    assert set(rec.extra) == set(EXTRA)
    a, b = model_input(original), model_input(foreign)
    # the only difference: a 2x polyphase upsampling, int16 rounding, 1000 -> 100 Hz vs
    # 500 -> 100 Hz; measured max 0.004 mV on +-2 mV signals
    assert np.abs(a - b).max() < 0.01
    assert np.abs(a - b).mean() < 1e-3
    with pytest.raises(RecordError, match="sampling_frequency: 1000 Hz"):
        read_record(foreign, 500, 5000)  # the strict mode (min_fs None) still refuses


def test_missing_lead_is_named_with_the_expected_names(tmp_path: Path) -> None:
    d = ecg_digital(np.random.default_rng(1))
    keep = [i for i, n in enumerate(LEADS) if n != "V3"]
    write_record(tmp_path, 10000001, 40000001, d[:, keep], leads=[LEADS[i] for i in keep])
    base = next(tmp_path.rglob("40000001.hea")).with_suffix("")
    with pytest.raises(RecordError) as err:
        read_record(base, 500, 5000, min_fs=100)
    msg = str(err.value)
    assert msg.startswith("not_12_lead: 11 signal(s)") and "missing V3" in msg
    assert "expected I, II, III, aVR, aVF, aVL, V1, V2, V3, V4, V5, V6" in msg
    # 12 channels, V3 replaced by a non-standard one
    names = [n if n != "V3" else "V3R" for n in LEADS]
    write_record(tmp_path, 10000001, 40000002, d, leads=names)
    with pytest.raises(RecordError, match=r"^missing_lead: V3 \(expected I, II"):
        read_record(next(tmp_path.rglob("40000002.hea")).with_suffix(""), 500, 5000)


def test_hea_dat_and_bare_paths_name_the_same_record(tmp_path: Path) -> None:
    d = ecg_digital(np.random.default_rng(2))
    write_record(tmp_path, 10000001, 40000003, d)
    base = next(tmp_path.rglob("40000003.hea")).with_suffix("")
    want = model_input(base)
    for path in (f"{base}.hea", f"{base}.dat", base):
        np.testing.assert_array_equal(model_input(path), want)


def test_multi_segment_and_non_12_lead_records_say_so(tmp_path: Path) -> None:
    (tmp_path / "multi.hea").write_text("multi/2 12 500 5000\nseg_1 2500\nseg_2 2500\n")
    with pytest.raises(RecordError, match=r"^multi_segment: multi-segment records are not"):
        read_record(tmp_path / "multi", 500, 5000, min_fs=100)
    holter = ecg_digital(np.random.default_rng(3))[:, :2]
    write_record(tmp_path, 10000001, 40000004, holter, leads=["MLII", "V5"])
    with pytest.raises(RecordError, match=r"^not_12_lead: 2 signal\(s\) \(MLII, V5\)"):
        read_record(next(tmp_path.rglob("40000004.hea")).with_suffix(""), 500, 5000, min_fs=100)


def test_refusals_name_the_file_and_the_header_line(tmp_path: Path) -> None:
    d = ecg_digital(np.random.default_rng(5))
    write_record(tmp_path, 10000001, 40000008, d)
    hea = next(tmp_path.rglob("40000008.hea"))
    good = hea.read_text()
    base = hea.with_suffix("")

    def reason(text: str) -> str:
        hea.write_text(text)
        with pytest.raises(RecordError) as err:
            read_record(base, 500, 5000, min_fs=100)
        return str(err.value)

    lines = good.splitlines()
    assert reason("# only a comment\n") == (
        "bad_header: 40000008.hea has no record line (empty or only comments)"
    )
    assert reason("40000008\n" + "\n".join(lines[1:])) == (
        "bad_header: 40000008.hea line 1: record line without a signal count ('40000008')"
    )
    assert reason(good.replace("40000008 12 500", "40000008 twelve 500", 1)).startswith(
        "bad_header: 40000008.hea line 1: record line: invalid literal for int()"
    )
    cut = [*lines[:3], "40000008.dat", *lines[4:]]  # the third signal line loses its fields
    assert reason("\n".join(cut)) == (
        "bad_header: 40000008.hea line 4: signal line without a format ('40000008.dat')"
    )
    assert reason("\n".join(lines[:6])).startswith(
        "bad_header: 40000008.hea: 12 signals declared on line 1, 5 signal line(s) follow"
    )
    hea.write_text(good)
    dat = hea.with_suffix(".dat")
    data = dat.read_bytes()
    dat.write_bytes(data[:1000])
    assert reason(good) == f"truncated_signal: 40000008.dat is 1000 bytes, expected {len(data)}"
    dat.unlink()
    assert reason(good) == "missing_signal: 40000008.dat not found (named in 40000008.hea)"
    hea.unlink()
    with pytest.raises(RecordError, match=r"^missing_header: 40000008.hea not found$"):
        read_record(base, 500, 5000, min_fs=100)


def test_rates_and_units(tmp_path: Path) -> None:
    d = ecg_digital(np.random.default_rng(4))
    write_record(tmp_path / "a", 10000001, 40000005, d)
    ref = model_input(next((tmp_path / "a").rglob("40000005.hea")).with_suffix(""))
    d250 = np.round(resample_poly(d.astype(np.float64), 1, 2, axis=0)).astype(np.int16)
    write_record(tmp_path / "b", 10000001, 40000006, d250, fs=250)
    got = model_input(next((tmp_path / "b").rglob("40000006.hea")).with_suffix(""))
    assert np.abs(got - ref).max() < 0.02  # 250 Hz keeps the 0-50 Hz band of the model
    write_record(tmp_path / "c", 10000001, 40000007, d[::10], fs=50)
    with pytest.raises(RecordError, match=r"sampling_frequency: 50 Hz; needs a whole rate >= 100"):
        model_input(next((tmp_path / "c").rglob("40000007.hea")).with_suffix(""))
    hea = next((tmp_path / "a").rglob("40000005.hea"))
    hea.write_text(hea.read_text().replace("/mV", "/uV"))  # same digits, 1000x smaller
    np.testing.assert_allclose(model_input(hea), ref / 1000, atol=2e-4)


def test_shard_stage_reads_foreign_exports_and_logs_the_summary_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ecg"
    cohort, signals = make_cohort(root, 3)
    sid, subj = cohort.row(0)[0], cohort.row(0)[1]
    foreign = foreign_export(tmp_path / "tmp", signals[sid])
    want = model_input(root / cohort["path"][0])
    for suffix in (".hea", ".dat"):  # replace record 0 by its foreign version
        (root / (cohort["path"][0] + suffix)).write_bytes(foreign.with_suffix(suffix).read_bytes())
    hea = root / (cohort["path"][0] + ".hea")
    hea.write_text(hea.read_text().replace("41000000", str(sid)))
    assert np.abs(model_input(hea) - want).max() < 0.01  # the resampling difference
    (root / (cohort["path"][1] + ".dat")).unlink()
    cohort.write_parquet(tmp_path / "cohort.parquet")
    cfg = ShardConfig(n_groups=1, shard_size=4, fs_out=100, clip_mv=3.0)
    with caplog.at_level(logging.INFO, logger="pipeline.data.shard"):
        report = shard_group(tmp_path / "cohort.parquet", root, 0, tmp_path / "s/group_0", cfg)
    assert (report.n_sharded, report.n_quarantined) == (2, 1)
    assert (report.n_extra_channels, report.n_resampled_other_rate) == (1, 1)
    summary = [r for r in caplog.records if "records quarantined" in r.getMessage()]
    assert len(summary) == 1 and "quarantined" not in capsys.readouterr().out
    merge_shard_groups([tmp_path / "s/group_0"], tmp_path / "s/index.parquet", tmp_path / "s/q.tsv")
    q = pl.read_csv(tmp_path / "s/q.tsv", separator="\t")
    index = pl.read_parquet(tmp_path / "s/index.parquet")
    assert set(q["study_id"]) | set(index["study_id"]) == set(cohort["study_id"])
    # shard stage and inference: one reader, one preprocessing, identical values
    np.testing.assert_array_equal(
        ShardStore(tmp_path / "s/index.parquet").get(sid), model_input(hea)
    )
    prep = read_index_preprocessing(tmp_path / "s/index.parquet")
    assert prep is not None and (prep.fs, prep.n_samples, prep.clip_mv) == (100, 1000, 3.0)
    assert prep.leads == LEADS and "resample_poly" in prep.resampling
    assert subj not in q.rows()[0]  # the quarantine keys by study_id and path only
