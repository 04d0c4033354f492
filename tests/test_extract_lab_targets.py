"""extract_lab_targets on hand-made events: thresholds, closest value, fluid, filters."""

from __future__ import annotations

import re

import polars as pl
import pytest
from mimic_fixtures import build, ecg, ed_dx, lab, patient, read_source, stay, synthetic

from pipeline.data.cohort import CohortConfig, extract_cohort
from pipeline.data.lab_targets import LabTargetConfig, extract_lab_targets
from pipeline.data.labs import DEFAULT_BOUNDS, PLAUSIBLE
from pipeline.mimic_schema import PROTOCOL_LABS

S1, S2, S3, S4 = 10000001, 10000002, 10000003, 10000004
K, NA, PH_BLOOD, PH_URINE = 50971, 50983, 50820, 51491


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab_targets")
    day = "2180-01-01"
    events = [
        # S1, ECG 10:00: 09:30 low value (30 min) vs 10:20 high value (20 min) -> high
        lab(S1, K, f"{day} 09:30:00", 3.0, 3.5, 5.0),
        lab(S1, K, f"{day} 10:20:00", 6.0, 3.4, 5.2),
        # S2, ECG 10:00: tie at -10 / +10 min -> the earlier one (low)
        lab(S2, K, f"{day} 09:50:00", 3.0, 0.0, 0.0),  # 0/0 = no range: not in medians
        lab(S2, K, f"{day} 10:10:00", 4.0, None, None),
        # S3, ECG 10:00: 61 min away -> not measured
        lab(S3, K, f"{day} 11:01:00", 9.0, 3.3, 5.1),
        lab(S3, K, f"{day} 10:30:00", -1.0, 3.6, 5.1),  # implausible (negative): ignored
        # S4 has a normal sodium; sodium has too few events to be a target
        lab(S4, NA, f"{day} 10:00:00", 140.0, 135.0, 145.0),
        lab(S4, NA, f"{day} 10:05:00", 120.0, 135.0, 145.0),
        # pH: urine outnumbers blood; blood gas values would be 'low' by urine limits
        lab(S1, PH_BLOOD, f"{day} 10:00:00", 7.4, 7.35, 7.45),
        lab(S2, PH_URINE, f"{day} 10:00:00", 8.5, 5.0, 8.0),
        lab(S3, PH_URINE, f"{day} 10:00:00", 6.0, 5.0, 8.0),
        lab(S4, PH_URINE, f"{day} 09:00:00", 6.0, 5.0, 8.0),  # 60 min before: in
    ]
    items = [
        {"itemid": K, "label": "Potassium", "fluid": "Blood", "category": "Chemistry"},
        {"itemid": NA, "label": "Sodium", "fluid": "Blood", "category": "Chemistry"},
        {"itemid": PH_BLOOD, "label": "pH", "fluid": "Blood", "category": "Blood Gas"},
        {"itemid": PH_URINE, "label": "pH", "fluid": "Urine", "category": "Hematology"},
    ]
    subjects = (S1, S2, S3, S4)
    rows = {
        "patients": [patient(s) for s in subjects],
        "edstays": [stay(s, 30000000 + i, f"{day} 09:30:00") for i, s in enumerate(subjects)],
        "record_list": [ecg(s, 40000000 + i, f"{day} 10:00:00") for i, s in enumerate(subjects)],
        "diagnosis": [ed_dx(s, 30000000 + i, "I10") for i, s in enumerate(subjects)],
        "d_labitems": items,
        "labevents": events,
    }
    tables = build(tmp, rows)
    cohort = tmp / "cohort.parquet"
    extract_cohort(tables, cohort, CohortConfig())
    out, manifest = tmp / "targets.parquet", tmp / "targets.tsv"
    extract_lab_targets(cohort, tables, out, manifest, LabTargetConfig(min_events=3))
    return pl.read_parquet(out), pl.read_csv(manifest, separator="\t")


def test_manifest(targets):
    _, manifest = targets
    rows = {r["target"]: r for r in manifest.iter_rows(named=True)}
    assert set(rows) == {"Potassium_low", "Potassium_high", "pH_high"}  # no pH_low positive
    k_low = rows["Potassium_low"]
    assert k_low["threshold"] == pytest.approx(3.4)  # median of 3.5, 3.4, 3.3 (not 0, null)
    assert rows["Potassium_high"]["threshold"] == pytest.approx(5.1)  # 5.0, 5.2, 5.1
    assert k_low["fluid"] == "Blood" and k_low["n_events"] == 5  # 6 events, the -1.0 is implausible
    assert rows["pH_high"]["fluid"] == "Urine" and rows["pH_high"]["threshold"] == 8.0
    assert (rows["pH_high"]["n_pos"], rows["pH_high"]["n_neg"]) == (1, 2)
    assert (k_low["n_pos"], k_low["n_neg"]) == (1, 1)


def test_closest_value_within_window(targets):
    frame, _ = targets
    got = {r["study_id"]: r for r in frame.iter_rows(named=True)}
    assert (got[40000000]["Potassium_high"], got[40000000]["Potassium_low"]) == (1, 0)
    assert (got[40000001]["Potassium_high"], got[40000001]["Potassium_low"]) == (0, 1)
    assert got[40000002]["Potassium_high"] is None  # only values 61 min away / implausible
    assert got[40000003]["pH_high"] == 0  # exactly 60 min before the ECG counts
    assert got[40000000]["pH_high"] is None  # blood pH is not the chosen fluid
    assert frame.schema["Potassium_high"] == pl.Int8
    assert frame["study_id"].to_list() == [40000000, 40000001, 40000002, 40000003]


def _reference_targets(src, cohort: pl.DataFrame, min_events: int) -> dict[str, tuple]:
    """Whole-table pandas: target -> (threshold, n_pos, n_neg), written from the protocol."""
    import pandas as pd

    items = read_source(src, "d_labitems")
    ev = read_source(src, "labevents").merge(items[["itemid", "label", "fluid"]], on="itemid")
    ev = ev[ev.label.isin(PROTOCOL_LABS)]
    fluid = (
        ev.groupby(["label", "fluid"])
        .size()
        .reset_index(name="n")
        .sort_values(["label", "n", "fluid"], ascending=[True, False, True])
        .drop_duplicates("label")
    )
    ev = ev.merge(fluid[["label", "fluid"]], on=["label", "fluid"])
    bounds = ev.label.map(lambda lab: PLAUSIBLE.get(lab, DEFAULT_BOUNDS))
    lo = bounds.map(lambda b: -float("inf") if b[0] is None else b[0])
    hi = bounds.map(lambda b: float("inf") if b[1] is None else b[1])
    ev = ev[ev.valuenum.notna() & (ev.valuenum >= lo) & (ev.valuenum <= hi)]
    ecgs = cohort.select("study_id", "subject_id", "ecg_time").to_pandas()
    near = ev.merge(ecgs, on="subject_id")
    near["dist"] = (near.charttime - near.ecg_time).abs()
    near = near[near.dist <= pd.Timedelta(minutes=60)]
    near = near.sort_values(["dist", "charttime", "valuenum"]).drop_duplicates(
        ["study_id", "label"]
    )
    out = {}
    for label, g in ev.groupby("label"):
        if len(g) < min_events:
            continue
        ranged = g[~((g.ref_range_lower == 0) & (g.ref_range_upper == 0))]
        values = near[near.label == label].valuenum
        slug = re.sub(r"[^0-9A-Za-z]+", "_", label).strip("_")
        for direction, col in (("low", "ref_range_lower"), ("high", "ref_range_upper")):
            thr = ranged[col].median()
            pos = int((values < thr).sum() if direction == "low" else (values > thr).sum())
            if pos:
                out[f"{slug}_{direction}"] = (thr, pos, len(values) - pos)
    return out


def test_synthetic_prevalences_match_pandas(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "synthetic"
    src, tables, cohort = synthetic(base)
    out, manifest_path = base / "targets.parquet", base / "targets.tsv"
    extract_lab_targets(cohort, tables, out, manifest_path, LabTargetConfig(min_events=200))
    expected = _reference_targets(src, pl.read_parquet(cohort), min_events=200)
    manifest = pl.read_csv(manifest_path, separator="\t")
    got = {
        r["target"]: (r["threshold"], r["n_pos"], r["n_neg"])
        for r in manifest.iter_rows(named=True)
    }
    assert got.keys() == expected.keys() and len(got) > 10
    for target, (thr, pos, neg) in expected.items():
        assert got[target] == (pytest.approx(thr), pos, neg), target
    frame = pl.read_parquet(out)
    for target, (_, pos, neg) in expected.items():
        assert (frame[target].sum(), (frame[target] == 0).sum()) == (pos, neg)
