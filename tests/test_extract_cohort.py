"""extract_cohort on hand-made tables: window edges, first stay, age, diagnosis filter."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import polars as pl
import pytest
from mimic_fixtures import build, ecg, ed_dx, hosp_dx, patient, read_source, stay, synthetic

from pipeline.data.cohort import CohortConfig, extract_cohort
from pipeline.data.tables import TableError


@pytest.fixture
def cohort(tmp_path):
    s1, s2, s3, s4 = 10000001, 10000002, 10000003, 10000004
    rows = {
        "patients": [
            patient(s1, "F", age=60, year=2180),
            patient(s2, "M", age=40, year=2178),
            patient(s3, "M", age=70, year=2180),
            # s4 has no patients row
        ],
        "edstays": [
            stay(s1, 30000001, "2180-03-01 10:00:00", hadm_id=20000001),
            stay(s1, 30000002, "2180-03-01 10:30:00"),  # overlaps stay 1: first stay wins
            stay(s2, 30000003, "2181-06-01 08:00:00"),
            stay(s3, 30000004, "2180-01-01 00:00:00"),  # no diagnosis at all
            stay(s4, 30000005, "2180-01-01 00:00:00"),
        ],
        "record_list": [
            ecg(s1, 40000001, "2180-03-01 10:00:00"),  # == intime: in
            ecg(s1, 40000002, "2180-03-01 11:30:00"),  # == intime + 90 min: in
            ecg(s1, 40000003, "2180-03-01 09:59:59"),  # before intime: out
            ecg(s1, 40000004, "2180-03-01 11:45:00"),  # only in stay 2's window
            ecg(s2, 40000005, "2181-06-01 09:30:01"),  # intime + 90 min + 1 s: out
            ecg(s2, 40000006, "2181-06-01 08:05:00"),
            ecg(s3, 40000007, "2180-01-01 00:10:00"),
            ecg(s4, 40000008, "2180-01-01 00:10:00"),
            ecg(s2, 40000009, "2181-06-01 08:05:00"),  # same time as 40000006
        ],
        "diagnoses_icd": [hosp_dx(s1, 20000001, "I4891")],
        "diagnosis": [
            ed_dx(s1, 30000002, "R079"),
            ed_dx(s2, 30000003, "I10"),
            ed_dx(s4, 30000005, "I10"),
        ],
    }
    tables = build(tmp_path, rows)
    out = tmp_path / "cohort.parquet"
    stats = extract_cohort(tables, out, CohortConfig(ed_window_minutes=90), tmp_path / "drop.tsv")
    return pl.read_parquet(out), stats, pl.read_csv(tmp_path / "drop.tsv", separator="\t")


def test_window_edges_and_first_stay(cohort):
    df, _, _ = cohort
    got = dict(zip(df["study_id"], df["stay_id"], strict=True))
    assert got == {
        40000001: 30000001,
        40000002: 30000001,  # also in stay 2's window; the first stay wins
        40000004: 30000002,
        40000006: 30000003,
        40000009: 30000003,
    }


def test_columns_and_values(cohort):
    df, stats, _ = cohort
    assert df.columns == [
        "study_id",
        "subject_id",
        "stay_id",
        "hadm_id",
        "ecg_time",
        "intime",
        "age",
        "gender",
        "path",
        "first_in_stay",
    ]
    assert df.schema["age"] == pl.Float64 and df.schema["first_in_stay"] == pl.Boolean
    row = df.filter(pl.col("study_id") == 40000006).row(0, named=True)
    assert row["age"] == 43.0  # 40 + (2181 - 2178)
    assert row["gender"] == "M" and row["hadm_id"] is None
    assert row["ecg_time"] == dt.datetime(2181, 6, 1, 8, 5)
    assert row["path"] == "files/p1000/p10000002/s40000006/40000006"
    assert df.filter(pl.col("study_id") == 40000001)["hadm_id"].item() == 20000001
    assert stats.n_records == 9
    assert stats.n_in_ed_window == 7  # incl. the no-diagnosis and no-patient ECGs
    assert stats.n_with_patient == 6
    assert stats.n_with_diagnosis == 5 and stats.n_stays == 3 and stats.n_subjects == 2


def test_first_in_stay_one_per_stay(cohort):
    df, _, _ = cohort
    firsts = df.filter(pl.col("first_in_stay"))
    assert sorted(firsts["study_id"]) == [40000001, 40000004, 40000006]  # tie -> smaller id
    assert firsts["stay_id"].n_unique() == df["stay_id"].n_unique() == firsts.height


def test_every_dropped_record_has_a_reason(cohort):
    df, _, dropped = cohort
    reasons = dict(zip(dropped["study_id"], dropped["reason"], strict=True))
    assert {k: v.split(" ")[1] for k, v in reasons.items()} == {
        40000003: "ED",
        40000005: "ED",
        40000008: "patients",
        40000007: "diagnosis",
    }
    assert len(reasons) + df.height == 9  # every record is in the cohort or listed


def test_repeated_study_id_is_an_error(tmp_path):
    rows = {
        "patients": [patient(10000001)],
        "edstays": [stay(10000001, 30000001, "2180-01-01 00:00:00")],
        "record_list": [ecg(10000001, 40000001, "2180-01-01 00:10:00")] * 2,
        "diagnosis": [ed_dx(10000001, 30000001, "I10")],
    }
    tables = build(tmp_path, rows)
    with pytest.raises(TableError, match=r"record_list.*study_id"):
        extract_cohort(tables, tmp_path / "c.parquet", CohortConfig())
    assert not (tmp_path / "c.parquet").exists()


def test_synthetic_cohort_matches_pandas(tmp_path_factory):
    """Cohort size and stay assignment against a whole-table pandas computation."""
    src, _, cohort_path = synthetic(tmp_path_factory.getbasetemp() / "synthetic")
    ecgs = read_source(src, "record_list")
    stays = read_source(src, "edstays")
    m = ecgs.merge(stays[["subject_id", "stay_id", "hadm_id", "intime"]], on="subject_id")
    m = m[(m.ecg_time >= m.intime) & (m.ecg_time <= m.intime + pd.Timedelta(minutes=90))]
    m = m.sort_values(["intime", "stay_id"]).drop_duplicates("study_id", keep="first")
    m = m[m.subject_id.isin(read_source(src, "patients").subject_id)]
    hosp = set(read_source(src, "diagnoses_icd").hadm_id)
    ed = set(read_source(src, "diagnosis").stay_id)
    m = m[m.hadm_id.isin(hosp) | m.stay_id.isin(ed)]
    got = pl.read_parquet(cohort_path)
    assert got.height == len(m) > 100
    assert dict(zip(got["study_id"], got["stay_id"], strict=True)) == dict(
        zip(m.study_id, m.stay_id, strict=True)
    )
    assert got.filter(pl.col("first_in_stay")).height == m.stay_id.nunique()
