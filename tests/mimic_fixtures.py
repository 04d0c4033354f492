"""Tiny MIMIC-shaped tables for extraction tests, written in the exact release layout.

Tests describe rows as dicts with only the columns they care about; every other schema
column is written empty (null). Files land where PhysioNet puts them
(``mimic-iv/hosp/*.csv.gz``, ``mimic-iv-ed/ed/*.csv.gz``, ``mimic-iv-ecg/record_list.csv``)
and are converted with the real :func:`pipeline.data.convert.convert_table`.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.data.convert import convert_table
from pipeline.mimic_schema import DATE_FORMAT, ECG, ED, HOSP, TABLES, TIMESTAMP_FORMAT

DATASET_DIRS = {HOSP: "mimic-iv", ED: "mimic-iv-ed", ECG: "mimic-iv-ecg"}
# Tables the extraction stages read (machine_measurements is not one of them).
EXTRACT_TABLES = [t for t in TABLES if t != "machine_measurements"]

Row = Mapping[str, Any]


def ts(text: str) -> dt.datetime:
    """``"2180-01-01 10:00"`` -> datetime (seconds optional)."""
    fmt = TIMESTAMP_FORMAT if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return dt.datetime.strptime(text, fmt)


def source_file(root: Path, table: str) -> Path:
    """Where ``table`` lives under a source root holding the three dataset folders."""
    spec = TABLES[table]
    return spec.path(root / DATASET_DIRS[spec.dataset])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime(TIMESTAMP_FORMAT)
    if isinstance(value, dt.date):
        return value.strftime(DATE_FORMAT)
    return str(value)


def csv_text(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """CSV with a header; unknown keys in a row are an error (typos in tests)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        extra = set(row) - set(columns)
        if extra:
            raise KeyError(f"columns {sorted(extra)} not in {list(columns)}")
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_table(root: Path, table: str, rows: Sequence[Row]) -> Path:
    """Write one table (csv or csv.gz by its release path) and return the file."""
    path = source_file(root, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = csv_text(list(TABLES[table].columns), rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def write_source(root: Path, rows: Mapping[str, Sequence[Row]]) -> Path:
    """Write every extraction table (absent ones header-only) under ``root``."""
    for table in EXTRACT_TABLES:
        write_table(root, table, rows.get(table, []))
    return root


def convert_source(root: Path, out: Path) -> dict[str, Path]:
    """Convert every extraction table under ``root`` into ``out/<table>.parquet``."""
    paths = {}
    for table in EXTRACT_TABLES:
        dst = out / f"{table}.parquet"
        convert_table(table, source_file(root, table), dst, batch_rows=1000)
        paths[table] = dst
    return paths


def build(tmp: Path, rows: Mapping[str, Sequence[Row]]) -> dict[str, Path]:
    """Write ``rows`` as a source tree under ``tmp/src`` and convert it to ``tmp/parquet``."""
    write_source(tmp / "src", rows)
    return convert_source(tmp / "src", tmp / "parquet")


# --- row builders with plausible defaults ------------------------------------------------


def patient(subject_id: int, gender: str = "F", age: int = 60, year: int = 2180) -> dict:
    return {"subject_id": subject_id, "gender": gender, "anchor_age": age, "anchor_year": year}


def stay(subject_id: int, stay_id: int, intime: str, hadm_id: int | None = None, **kw: Any) -> dict:
    start = ts(intime)
    return {
        "subject_id": subject_id,
        "stay_id": stay_id,
        "hadm_id": hadm_id,
        "intime": start,
        "outtime": start + dt.timedelta(hours=8),
        "gender": "F",
        **kw,
    }


def ecg(subject_id: int, study_id: int, time: str) -> dict:
    path = f"files/p{str(subject_id)[:4]}/p{subject_id}/s{study_id}/{study_id}"
    return {
        "subject_id": subject_id,
        "study_id": study_id,
        "file_name": str(study_id),
        "ecg_time": ts(time),
        "path": path,
    }


def ed_dx(subject_id: int, stay_id: int, code: str, version: int = 10, seq: int = 1) -> dict:
    return {
        "subject_id": subject_id,
        "stay_id": stay_id,
        "seq_num": seq,
        "icd_code": code,
        "icd_version": version,
        "icd_title": f"title of {code}",
    }


def hosp_dx(subject_id: int, hadm_id: int, code: str, version: int = 10, seq: int = 1) -> dict:
    return {
        "subject_id": subject_id,
        "hadm_id": hadm_id,
        "seq_num": seq,
        "icd_code": code,
        "icd_version": version,
    }


def lab(
    subject_id: int,
    itemid: int,
    time: str,
    value: float | None,
    lower: float | None = None,
    upper: float | None = None,
    labevent_id: int = 0,
) -> dict:
    return {
        "labevent_id": labevent_id,
        "subject_id": subject_id,
        "itemid": itemid,
        "charttime": ts(time),
        "value": None if value is None else str(value),
        "valuenum": value,
        "ref_range_lower": lower,
        "ref_range_upper": upper,
    }


# --- a small generated cohort, shared by the test modules of one session -----------------

SYNTH_SUBJECTS = 400
_SYNTH: dict[Path, tuple[Path, dict[str, Path], Path]] = {}


def synthetic(base: Path) -> tuple[Path, dict[str, Path], Path]:
    """Generate (once per session) a small synthetic cohort under ``base``, convert it and
    extract the ED cohort. Returns (source root, parquet tables, cohort parquet)."""
    if base not in _SYNTH:
        from pipeline.data.cohort import CohortConfig, extract_cohort
        from pipeline.synth import SynthConfig, synthesize_cohort

        src = base / "src"
        cfg = SynthConfig(seed=7, n_subjects=SYNTH_SUBJECTS, write_waveforms=False)
        synthesize_cohort(
            cfg, src / "mimic-iv", src / "mimic-iv-ed", src / "mimic-iv-ecg", base / "gt.parquet"
        )
        tables = convert_source(src, base / "parquet")
        cohort = base / "cohort.parquet"
        extract_cohort(tables, cohort, CohortConfig(ed_window_minutes=90))
        _SYNTH[base] = (src, tables, cohort)
    return _SYNTH[base]


def read_source(src: Path, table: str):  # -> pandas.DataFrame (pandas imported lazily)
    """A source table read whole with pandas, for independent reference computations."""
    import pandas as pd

    spec = TABLES[table]
    dates = [c for c, t in spec.columns.items() if str(t).startswith(("Datetime", "Date"))]
    return pd.read_csv(
        source_file(src, table), parse_dates=dates, keep_default_na=False, na_values=[""]
    )
