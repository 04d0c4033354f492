"""extract_features on hand-made tables: statistics, windows, fluids, units, manifest."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from mimic_fixtures import build, ecg, ed_dx, lab, patient, read_source, stay, synthetic, ts

from pipeline.data.cohort import CohortConfig, extract_cohort
from pipeline.data.features import FeatureConfig, extract_features

S1, S2 = 10000001, 10000002
K_ITEM, PH_BLOOD, PH_URINE, GLU = 50971, 50820, 51491, 50931


def _labitems():
    return [
        {"itemid": K_ITEM, "label": "Potassium", "fluid": "Blood", "category": "Chemistry"},
        {"itemid": PH_BLOOD, "label": "pH", "fluid": "Blood", "category": "Blood Gas"},
        {"itemid": PH_URINE, "label": "pH", "fluid": "Urine", "category": "Hematology"},
        {"itemid": GLU, "label": "Glucose", "fluid": "Blood", "category": "Chemistry"},
    ]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    t0 = "2180-03-01 10:00:00"
    labs = [
        lab(S1, K_ITEM, "2180-03-01 10:00:00", 4.0),
        lab(S1, K_ITEM, "2180-03-01 10:30:00", 5.0),
        lab(S1, K_ITEM, "2180-03-01 11:30:00", 6.5),  # window edge: in
        lab(S1, K_ITEM, "2180-03-01 11:31:00", 9.0),  # after the window
        lab(S1, K_ITEM, "2180-03-01 09:59:00", 1.0),  # before intime
        lab(S1, GLU, "2180-03-01 10:10:00", 150.0),
        lab(S1, GLU, "2180-03-01 10:20:00", 99999.0),  # implausible -> dropped
        lab(S1, PH_BLOOD, "2180-03-01 10:05:00", 7.2),  # blood pH is the rarer fluid
        lab(S1, PH_URINE, "2180-03-01 10:06:00", 6.0),
        # urine pH outnumbers blood pH over the whole table (other subjects/times)
        *[lab(S2, PH_URINE, f"2170-01-0{d} 00:00:00", 5.5) for d in range(1, 4)],
    ]
    rows = {
        "patients": [patient(S1, "F", 60, 2180), patient(S2, "M", 50, 2180)],
        "admissions": [{"subject_id": S1, "hadm_id": 20000001, "race": "BLACK/AFRICAN AMERICAN"}],
        "edstays": [
            stay(S1, 30000001, t0, hadm_id=20000001, race="WHITE"),
            stay(S2, 30000002, "2180-05-01 10:00:00", race="ASIAN - CHINESE"),
        ],
        "record_list": [
            ecg(S1, 40000001, "2180-03-01 10:10:00"),
            ecg(S1, 40000002, "2180-03-01 11:00:00"),
            ecg(S2, 40000003, "2180-05-01 10:10:00"),
        ],
        "diagnosis": [ed_dx(S1, 30000001, "I10"), ed_dx(S2, 30000002, "R07")],
        "d_labitems": _labitems(),
        "labevents": labs,
        "vitalsign": [
            {
                "subject_id": S1,
                "stay_id": 30000001,
                "charttime": ts("2180-03-01 10:30"),
                "temperature": 100.4,
                "heartrate": 90.0,
                "sbp": 500.0,
            },
            {
                "subject_id": S1,
                "stay_id": 30000001,
                "charttime": ts("2180-03-01 12:00"),
                "heartrate": 200.0,
            },  # outside the window
        ],
        "triage": [
            {
                "subject_id": S1,
                "stay_id": 30000001,
                "temperature": 37.0,
                "heartrate": 80.0,
                "acuity": 2.0,
            },
            {"subject_id": S2, "stay_id": 30000002, "acuity": 4.0},
        ],
        "omr": [
            {
                "subject_id": S1,
                "chartdate": dt.date(2180, 2, 20),
                "seq_num": 1,
                "result_name": "Weight (Lbs)",
                "result_value": "200",
            },
            {
                "subject_id": S1,
                "chartdate": dt.date(2180, 3, 25),
                "seq_num": 1,
                "result_name": "Weight (Lbs)",
                "result_value": "180",
            },  # farther
            {
                "subject_id": S1,
                "chartdate": dt.date(2180, 3, 2),
                "seq_num": 1,
                "result_name": "Weight (Lbs)",
                "result_value": "2000",
            },  # outlier
            {
                "subject_id": S1,
                "chartdate": dt.date(2180, 1, 1),
                "seq_num": 1,
                "result_name": "Height (Inches)",
                "result_value": "70",
            },  # > 30 days
            {
                "subject_id": S1,
                "chartdate": dt.date(2180, 3, 1),
                "seq_num": 1,
                "result_name": "Blood Pressure",
                "result_value": "120/80",
            },
        ],
    }
    tables = build(tmp, rows)
    cohort = tmp / "cohort.parquet"
    extract_cohort(tables, cohort, CohortConfig())
    out, manifest = tmp / "features.parquet", tmp / "manifest.tsv"
    extract_features(cohort, tables, out, manifest, FeatureConfig())
    return pl.read_parquet(out), pl.read_csv(manifest, separator="\t")


def _row(df: pl.DataFrame, study_id: int) -> dict:
    return df.filter(pl.col("study_id") == study_id).row(0, named=True)


def test_lab_statistics_match_numpy(extracted):
    df, _ = extracted
    t = np.array([0.0, 30.0, 90.0])
    v = np.array([4.0, 5.0, 6.5])
    row = _row(df, 40000001)
    expected = {
        "mean": v.mean(),
        "median": np.median(v),
        "min": v.min(),
        "max": v.max(),
        "std": v.std(ddof=1),
        "first": 4.0,
        "last": 6.5,
        "rate_change": (6.5 - 4.0) / 4.0,
        "coeff": np.polyfit(t, v, 1)[0],
    }
    for stat, value in expected.items():
        assert row[f"labvalues_potassium_{stat}"] == pytest.approx(value), stat
    # the second ECG of the stay shares the stay's window features
    assert _row(df, 40000002)["labvalues_potassium_mean"] == pytest.approx(v.mean())


def test_implausible_dropped_and_single_value_stats(extracted):
    df, _ = extracted
    row = _row(df, 40000001)
    assert row["labvalues_glucose_max"] == 150.0
    assert row["labvalues_glucose_std"] is None and row["labvalues_glucose_coeff"] is None


def test_most_frequent_fluid(extracted):
    df, _ = extracted
    assert _row(df, 40000001)["labvalues_ph_mean"] == 6.0  # urine, not the blood gas 7.2


def test_vitals_triage_units_caps(extracted):
    df, _ = extracted
    row = _row(df, 40000001)
    # triage 37.0 C at minute 0, vitalsign 100.4 F = 38.0 C at minute 30
    assert row["vitals_temperature_first"] == pytest.approx(37.0)
    assert row["vitals_temperature_last"] == pytest.approx(38.0)
    assert row["vitals_heartrate_max"] == 90.0  # 200 at 12:00 is outside the window
    assert row["vitals_heartrate_coeff"] == pytest.approx(10 / 30)
    assert row["vitals_sbp_mean"] is None  # 500 mmHg is capped away
    assert row["vitals_acuity"] == "2"
    other = _row(df, 40000003)
    assert other["vitals_acuity"] == "4" and other["vitals_heartrate_mean"] is None


def test_biometrics_and_demographics(extracted):
    df, _ = extracted
    row = _row(df, 40000001)
    assert row["biometrics_weight"] == pytest.approx(200 * 0.45359237)  # 9 days before
    assert row["biometrics_height"] is None  # 60 days away
    assert row["demographics_age"] == 60.0 and row["demographics_gender"] == "F"
    assert row["demographics_ethnicity"] == "black"  # admission race wins over the stay's
    assert _row(df, 40000003)["demographics_ethnicity"] == "asian"  # no admission


def test_manifest_and_shape(extracted):
    df, manifest = extracted
    assert df.height == 3 and df["study_id"].to_list() == [40000001, 40000002, 40000003]
    assert manifest["column"].to_list() == df.columns[1:]
    kinds = dict(zip(manifest["column"], manifest["kind"], strict=True))
    groups = manifest.group_by("group", "kind").len().sort("group", "kind").rows()
    assert groups == [
        ("lab", "continuous", 405),
        ("routine", "categorical", 3),
        ("routine", "continuous", 58),
    ]
    assert {c for c, k in kinds.items() if k == "categorical"} == {
        "demographics_gender",
        "demographics_ethnicity",
        "vitals_acuity",
    }
    cat = [c for c, k in kinds.items() if k == "categorical"]
    assert all(df.schema[c] == pl.Utf8 for c in cat)
    assert all(df.schema[c] == pl.Float64 for c in kinds if c not in cat)


def test_synthetic_lab_means_match_pandas(tmp_path_factory):
    """Per-ECG lab means / last values against a whole-table pandas computation."""
    import pandas as pd

    base = tmp_path_factory.getbasetemp() / "synthetic"
    src, tables, cohort = synthetic(base)
    out, manifest = base / "features.parquet", base / "features.tsv"
    got = extract_features(cohort, tables, out, manifest, FeatureConfig(window_minutes=90))
    items = read_source(src, "d_labitems")
    ev = read_source(src, "labevents").merge(items[["itemid", "label", "fluid"]], on="itemid")
    sizes = ev.groupby(["label", "fluid"]).size().reset_index(name="n")
    top = sizes.sort_values(["label", "n", "fluid"], ascending=[True, False, True])
    ev = ev.merge(top.drop_duplicates("label")[["label", "fluid"]], on=["label", "fluid"])
    ecgs = pl.read_parquet(cohort).select("study_id", "subject_id", "intime").to_pandas()
    m = ev.merge(ecgs, on="subject_id")
    m = m[(m.charttime >= m.intime) & (m.charttime <= m.intime + pd.Timedelta(minutes=90))]
    m = m[m.valuenum.notna()].sort_values(["charttime", "valuenum"])
    for label in ("Potassium", "Troponin T", "Hemoglobin", "pH"):
        g = m[(m.label == label) & (m.valuenum >= 0)].groupby("study_id").valuenum
        prefix = "labvalues_" + label.lower().replace(" ", "_")
        ours = got.select("study_id", f"{prefix}_mean", f"{prefix}_last").drop_nulls()
        assert ours.height == g.ngroups > 0, label
        mean, last = g.mean(), g.last()
        for sid, our_mean, our_last in ours.iter_rows():
            assert our_mean == pytest.approx(mean[sid]) and our_last == pytest.approx(last[sid])
