"""The ED-ECG cohort: one row per ECG taken within the window after an ED stay's intime.

Protocol (Strodthoff et al. 2024; Alcaraz et al. 2025, MDS-ED): an ECG belongs to an ED
stay when taken within ``ed_window_minutes`` (90) after the stay's ``intime``; when
several stays qualify, the first (earliest intime) is taken. The admission links through
the stay's ``hadm_id``; age at the ECG is ``anchor_age + (year(ecg_time) - anchor_year)``.
ECGs without any diagnosis statement (no hospital codes for the linked admission and no
ED diagnosis codes for the stay) are dropped.

The ECG time is ``record_list.ecg_time``; the shard stage reads the WFDB header and
checks its base date/time against it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.data.checks import require
from pipeline.data.tables import TableError, collect, scan
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

COLUMNS = (
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
)


@dataclass(frozen=True)
class CohortConfig:
    """Config section ``cohort``.

    Attributes:
        ed_window_minutes: an ECG belongs to a stay when ``intime <= ecg_time <=
            intime + ed_window_minutes``.
    """

    ed_window_minutes: int = 90


@dataclass(frozen=True)
class CohortStats:
    """ECG counts after each cohort step (no identifiers)."""

    n_records: int
    n_in_ed_window: int
    n_with_patient: int
    n_with_diagnosis: int
    n_subjects: int
    n_stays: int


def match_stays(ecgs: pl.LazyFrame, stays: pl.LazyFrame, window: pl.Expr) -> pl.LazyFrame:
    """Each ECG's first stay whose window contains it, via an as-of join.

    For each ECG, the earliest stay of the same subject with ``intime >= ecg_time -
    window`` is found (forward as-of join); it contains the ECG iff ``intime <=
    ecg_time``, and no earlier stay can contain it. This avoids the subject-level
    cross product of ECGs and stays.
    """
    left = ecgs.with_columns((pl.col("ecg_time") - window).alias("window_start")).sort(
        "window_start"
    )
    right = stays.sort(["intime", "stay_id"])
    return (
        left.join_asof(
            right,
            left_on="window_start",
            right_on="intime",
            by="subject_id",
            strategy="forward",
            check_sortedness=False,  # both sides sorted above; polars cannot check with by
        )
        .filter(pl.col("intime").is_not_null() & (pl.col("intime") <= pl.col("ecg_time")))
        .drop("window_start")
    )


def with_age(ecgs: pl.LazyFrame, tables: Mapping[str, Path | str]) -> pl.LazyFrame:
    """ECGs joined to their patients row (gender, anchors) with the age at the ECG; ECGs
    whose subject has no row or no anchor age or year are dropped."""
    patients = scan(tables, "patients", ["subject_id", "gender", "anchor_age", "anchor_year"])
    return (
        ecgs.join(patients, on="subject_id", how="inner")
        .filter(pl.col("anchor_age").is_not_null() & pl.col("anchor_year").is_not_null())
        .with_columns(
            (pl.col("anchor_age") + pl.col("ecg_time").dt.year() - pl.col("anchor_year"))
            .cast(pl.Float64)
            .alias("age")
        )
    )


def _has_diagnosis(ecgs: pl.LazyFrame, tables: Mapping[str, Path | str]) -> pl.LazyFrame:
    """Keep ECGs whose linked admission has hospital codes or whose stay has ED codes."""
    hosp = (
        scan(tables, "diagnoses_icd", ["hadm_id"])
        .unique()
        .with_columns(pl.lit(True).alias("has_hosp"))
    )
    ed = scan(tables, "diagnosis", ["stay_id"]).unique().with_columns(pl.lit(True).alias("has_ed"))
    return (
        ecgs.join(hosp, on="hadm_id", how="left")
        .join(ed, on="stay_id", how="left")
        .filter(pl.col("has_hosp").fill_null(False) | pl.col("has_ed").fill_null(False))
        .drop("has_hosp", "has_ed")
    )


def _first_in_stay(cohort: pl.DataFrame) -> pl.DataFrame:
    """Flag the stay's earliest ECG (ties broken by the smaller study_id)."""
    return (
        cohort.sort(["stay_id", "ecg_time", "study_id"])
        .with_columns((pl.int_range(pl.len()).over("stay_id") == 0).alias("first_in_stay"))
        .sort("study_id")
    )


def _dropped(kept: list[pl.DataFrame], reasons: list[str]) -> pl.DataFrame:
    """(study_id, reason) for the records each step lost; ``kept[i + 1]`` is a subset of
    ``kept[i]`` and ``reasons[i]`` says why step i + 1 dropped the rest."""
    parts = [
        before.select("study_id")
        .join(after.select("study_id"), on="study_id", how="anti")
        .with_columns(pl.lit(reason).alias("reason"))
        for before, after, reason in zip(kept[:-1], kept[1:], reasons, strict=True)
    ]
    return pl.concat(parts).sort("study_id")


def extract_cohort(
    tables: Mapping[str, Path | str],
    out: Path,
    cfg: CohortConfig,
    dropped_out: Path | None = None,
) -> CohortStats:
    """Build the ED-ECG cohort and write it to ``out`` (parquet, one row per ECG).

    Args:
        tables: converted tables by name; uses record_list, edstays, patients,
            diagnoses_icd and diagnosis.
        out: the cohort parquet (columns :data:`COLUMNS`, sorted by study_id).
        cfg: the window.
        dropped_out: optional TSV (study_id, reason) listing every record_list ECG that
            is not in the cohort and why.

    Raises:
        TableError: a table is missing or malformed, or record_list repeats a study_id.
    """
    records = scan(tables, "record_list", ["subject_id", "study_id", "ecg_time", "path"])
    all_ids = collect(records.select("study_id"))
    n_records, n_unique = all_ids.height, all_ids["study_id"].n_unique()
    if n_records != n_unique:
        raise TableError(
            f"{tables['record_list']}: study_id is not unique ({n_records - n_unique} repeats)"
        )
    log.info("record_list: %d ECG records", n_records)
    require(n_records, 1, f"{tables['record_list']}: no ECG records; check source.mimic_iv_ecg")
    stays = scan(tables, "edstays", ["subject_id", "stay_id", "hadm_id", "intime"])
    window = pl.duration(minutes=cfg.ed_window_minutes)
    in_window = collect(match_stays(records, stays, window))
    log.info("%d ECGs within %d min after an ED intime", in_window.height, cfg.ed_window_minutes)
    require(
        in_window.height,
        1,
        f"0 of {n_records:,} ECGs fall within {cfg.ed_window_minutes} minutes of an ED intime; "
        "check source paths (source.mimic_iv_ecg, source.mimic_iv_ed: the same patients?) "
        "and cohort.ed_window_minutes",
    )
    with_patient = collect(with_age(in_window.lazy(), tables))
    n_patient = with_patient.height
    require(
        n_patient,
        1,
        f"0 of {in_window.height:,} ECGs in an ED window have a patients row with anchor "
        "age and year; check source.mimic_iv (hosp/patients.csv.gz)",
    )
    log.info(
        "%d ECGs dropped: subject without a patients row or anchor", in_window.height - n_patient
    )
    cohort = collect(_has_diagnosis(with_patient.lazy(), tables))
    log.info("%d ECGs dropped: no diagnosis statement", n_patient - cohort.height)
    require(
        cohort.height,
        1,
        f"0 of {n_patient:,} ECGs in an ED window have diagnosis codes (admission or ED "
        "stay); check source.mimic_iv (hosp/diagnoses_icd) and source.mimic_iv_ed (ed/diagnosis)",
    )
    cohort = _first_in_stay(cohort).select(COLUMNS)
    stats = CohortStats(
        n_records=n_records,
        n_in_ed_window=in_window.height,
        n_with_patient=n_patient,
        n_with_diagnosis=cohort.height,
        n_subjects=cohort["subject_id"].n_unique(),
        n_stays=cohort["stay_id"].n_unique(),
    )
    log.info(
        "cohort: %d ECGs, %d stays, %d subjects",
        stats.n_with_diagnosis,
        stats.n_stays,
        stats.n_subjects,
    )
    if dropped_out is not None:
        reasons = [
            f"no ED stay with intime <= ecg_time <= intime + {cfg.ed_window_minutes} min",
            "no patients row or anchor year/age",
            "no diagnosis codes (admission or ED stay)",
        ]
        dropped = _dropped([all_ids, in_window, with_patient, cohort], reasons)
        with atomic_path(dropped_out, suffix=".tsv") as tmp:
            dropped.write_csv(tmp, separator="\t")
    with atomic_path(out, suffix=".parquet") as tmp:
        cohort.write_parquet(tmp)
    return stats
