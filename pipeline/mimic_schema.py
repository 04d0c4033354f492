"""The MIMIC tables and WFDB conventions we read: one source of truth.

Both the synthetic generator (:mod:`pipeline.synth`) and the extraction stages
(:mod:`pipeline.data`) use these specs, so a generated cohort and a real PhysioNet
release are read by the same code. Column order is file order; types follow the
official MIMIC-IV v2.2+/3.x, MIMIC-IV-ED v2.2 and MIMIC-IV-ECG v1.0 definitions
(see ``docs/mimic_schema.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

# Dataset keys match the ``source`` section of config.yaml.
ECG, HOSP, ED = "mimic_iv_ecg", "mimic_iv", "mimic_iv_ed"

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

I64, F64, STR = pl.Int64(), pl.Float64(), pl.String()
TS, DATE = pl.Datetime("us"), pl.Date()


@dataclass(frozen=True)
class TableSpec:
    """One source table: where it lives under its dataset root and its columns."""

    name: str
    dataset: str
    relpath: str
    columns: dict[str, pl.DataType]

    def path(self, root: str | Path) -> Path:
        """The table's file under a dataset root, e.g. ``<mimic_iv>/hosp/omr.csv.gz``."""
        return Path(root) / self.relpath


def _spec(name: str, dataset: str, relpath: str, columns: dict[str, pl.DataType]) -> TableSpec:
    return TableSpec(name, dataset, relpath, columns)


_REPORTS: dict[str, pl.DataType] = {f"report_{i}": STR for i in range(18)}

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        # --- MIMIC-IV-ECG v1.0 (plain csv) ---------------------------------------------
        _spec(
            "record_list",
            ECG,
            "record_list.csv",
            {"subject_id": I64, "study_id": I64, "file_name": STR, "ecg_time": TS, "path": STR},
        ),
        _spec(
            "machine_measurements",
            ECG,
            "machine_measurements.csv",
            {"subject_id": I64, "study_id": I64, "cart_id": I64, "ecg_time": TS}
            | _REPORTS
            | {"bandwidth": STR, "filtering": STR}
            | {c: I64 for c in ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end")}
            | {c: I64 for c in ("p_axis", "qrs_axis", "t_axis")},
        ),
        # --- MIMIC-IV hosp -------------------------------------------------------------
        _spec(
            "patients",
            HOSP,
            "hosp/patients.csv.gz",
            {
                "subject_id": I64,
                "gender": STR,
                "anchor_age": I64,
                "anchor_year": I64,
                "anchor_year_group": STR,
                "dod": DATE,
            },
        ),
        _spec(
            "admissions",
            HOSP,
            "hosp/admissions.csv.gz",
            {
                "subject_id": I64,
                "hadm_id": I64,
                "admittime": TS,
                "dischtime": TS,
                "deathtime": TS,
                "admission_type": STR,
                "admit_provider_id": STR,
                "admission_location": STR,
                "discharge_location": STR,
                "insurance": STR,
                "language": STR,
                "marital_status": STR,
                "race": STR,
                "edregtime": TS,
                "edouttime": TS,
                "hospital_expire_flag": I64,
            },
        ),
        _spec(
            "labevents",
            HOSP,
            "hosp/labevents.csv.gz",
            {
                "labevent_id": I64,
                "subject_id": I64,
                "hadm_id": I64,
                "specimen_id": I64,
                "itemid": I64,
                "order_provider_id": STR,
                "charttime": TS,
                "storetime": TS,
                "value": STR,
                "valuenum": F64,
                "valueuom": STR,
                "ref_range_lower": F64,
                "ref_range_upper": F64,
                "flag": STR,
                "priority": STR,
                "comments": STR,
            },
        ),
        _spec(
            "d_labitems",
            HOSP,
            "hosp/d_labitems.csv.gz",
            {"itemid": I64, "label": STR, "fluid": STR, "category": STR},
        ),
        _spec(
            "omr",
            HOSP,
            "hosp/omr.csv.gz",
            {
                "subject_id": I64,
                "chartdate": DATE,
                "seq_num": I64,
                "result_name": STR,
                "result_value": STR,
            },
        ),
        _spec(
            "diagnoses_icd",
            HOSP,
            "hosp/diagnoses_icd.csv.gz",
            {
                "subject_id": I64,
                "hadm_id": I64,
                "seq_num": I64,
                "icd_code": STR,
                "icd_version": I64,
            },
        ),
        _spec(
            "d_icd_diagnoses",
            HOSP,
            "hosp/d_icd_diagnoses.csv.gz",
            {"icd_code": STR, "icd_version": I64, "long_title": STR},
        ),
        # --- MIMIC-IV-ED v2.2 ----------------------------------------------------------
        _spec(
            "edstays",
            ED,
            "ed/edstays.csv.gz",
            {
                "subject_id": I64,
                "hadm_id": I64,
                "stay_id": I64,
                "intime": TS,
                "outtime": TS,
                "gender": STR,
                "race": STR,
                "arrival_transport": STR,
                "disposition": STR,
            },
        ),
        _spec(
            "triage",
            ED,
            "ed/triage.csv.gz",
            {
                "subject_id": I64,
                "stay_id": I64,
                "temperature": F64,
                "heartrate": F64,
                "resprate": F64,
                "o2sat": F64,
                "sbp": F64,
                "dbp": F64,
                "pain": STR,
                "acuity": F64,
                "chiefcomplaint": STR,
            },
        ),
        _spec(
            "vitalsign",
            ED,
            "ed/vitalsign.csv.gz",
            {
                "subject_id": I64,
                "stay_id": I64,
                "charttime": TS,
                "temperature": F64,
                "heartrate": F64,
                "resprate": F64,
                "o2sat": F64,
                "sbp": F64,
                "dbp": F64,
                "rhythm": STR,
                "pain": STR,
            },
        ),
        _spec(
            "diagnosis",
            ED,
            "ed/diagnosis.csv.gz",
            {
                "subject_id": I64,
                "stay_id": I64,
                "seq_num": I64,
                "icd_code": STR,
                "icd_version": I64,
                "icd_title": STR,
            },
        ),
    ]
}

# Columns the pipeline reads of a table that it reads only in part. With config
# `convert.projection` (the default) conversion keeps just these and labels the parquet
# as a projection in its metadata: every column is still tokenised, but typing and
# encoding the unused ones was half of labevents' conversion CPU (bench/extract.py).
# Readers: pipeline/data/features.py, lab_targets.py, labs.py.
PROJECTIONS: dict[str, tuple[str, ...]] = {
    "labevents": (
        "subject_id",
        "itemid",
        "charttime",
        "valuenum",
        "ref_range_lower",
        "ref_range_upper",
    ),
}


def table(name: str) -> TableSpec:
    """Look up a table spec by name, with an error that lists the known tables."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown MIMIC table {name!r}; known: {sorted(TABLES)}") from None


def polars_schema(name: str) -> pl.Schema:
    """The polars schema of a table (what its parquet conversion must carry)."""
    return pl.Schema(table(name).columns)


# --- WFDB conventions of MIMIC-IV-ECG v1.0 ------------------------------------------------
# Header lead order of the release: aVF comes before aVL.
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
FS_HZ = 500
N_SAMPLES = 5000
ADC_GAIN = 200.0  # adu per mV
ADC_BASELINE = 0
WFDB_FMT = "16"
UNITS = "mV"
MISSING_ADC = -32768  # stored for missing samples; wfdb reads it back as NaN
MACHINE_MISSING = 29999  # missing numeric value in machine_measurements

# The 45 lab labels of MDS-ED, as spelled in d_labitems.label. Features group events by
# (label, fluid) with the most frequent fluid per label, never by itemid.
PROTOCOL_LABS: tuple[str, ...] = (
    "Absolute Basophil Count",
    "Absolute Eosinophil Count",
    "Absolute Lymphocyte Count",
    "Alanine Aminotransferase (ALT)",
    "Albumin",
    "Alkaline Phosphatase",
    "Asparate Aminotransferase (AST)",
    "Bands",
    "Base Excess",
    "Basophils",
    "Bicarbonate",
    "Bilirubin, Direct",
    "Bilirubin, Total",
    "C-Reactive Protein",
    "Calcium, Total",
    "Carboxyhemoglobin",
    "Chloride",
    "Creatine Kinase (CK)",
    "Creatine Kinase, MB Isoenzyme",
    "Creatinine",
    "Eosinophils",
    "Fibrinogen, Functional",
    "Free Calcium",
    "Glucose",
    "Hematocrit",
    "Hemoglobin",
    "INR(PT)",
    "Lactate",
    "Lymphocytes",
    "Magnesium",
    "Neutrophils",
    "Oxygen Saturation",
    "PT",
    "PTT",
    "Phosphate",
    "Platelet Count",
    "Potassium",
    "RDW",
    "Red Blood Cells",
    "Sodium",
    "Troponin T",
    "Urea Nitrogen",
    "White Blood Cells",
    "pCO2",
    "pH",
)

VITALS: tuple[str, ...] = ("temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp")


_DOC_HEADER = """# MIMIC tables the pipeline reads

Generated from `pipeline/mimic_schema.py`, the single source of truth (regenerate with
`python -m pipeline.mimic_schema > docs/mimic_schema.md`; a test fails when this file is stale). The
synthetic generator writes exactly these files and columns; the converters read them with these
types and stop, naming the file and column, on anything else.

Roots (config `source`): `mimic_iv` holds `hosp/`, `mimic_iv_ed` holds `ed/`, `mimic_iv_ecg`
holds `record_list.csv` and
`files/p<first 4 digits>/p<subject_id>/s<study_id>/<study_id>.{{hea,dat}}`
(the public demo omits the `p<first 4 digits>` level: readers take `record_list.path` as given).
CSV: header row, empty field = NULL, timestamps `YYYY-MM-DD HH:MM:SS`, dates `YYYY-MM-DD`.

WFDB records: 12 leads in the order {leads};
{fs} Hz, {n} samples, format {fmt}, gain {gain:g} adu/{units}, baseline {baseline};
missing samples stored as {missing} (read back as NaN).
"""


def markdown() -> str:
    """Render the table specs and WFDB conventions as the Markdown of docs/mimic_schema.md."""
    out = [
        _DOC_HEADER.format(
            leads=", ".join(LEADS),
            fs=FS_HZ,
            n=N_SAMPLES,
            fmt=WFDB_FMT,
            gain=ADC_GAIN,
            units=UNITS,
            baseline=ADC_BASELINE,
            missing=MISSING_ADC,
        )
    ]
    for spec in TABLES.values():
        out.append(f"## `{spec.relpath}` ({spec.dataset})\n")
        out.append("| column | type |\n|---|---|")
        out.extend(f"| {col} | {dtype} |" for col, dtype in spec.columns.items())
        out.append("")
        if spec.name in PROJECTIONS:
            kept = ", ".join(PROJECTIONS[spec.name])
            out.append(f"Converted as a projection (`convert.projection`): only {kept}.\n")
    out.append("## Protocol lab labels (d_labitems.label)\n")
    out.append(", ".join(PROTOCOL_LABS) + "\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(), end="")
