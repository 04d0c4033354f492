"""Ethnicity in the 5 groups of MDS-ED from MIMIC's free-text race categories."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from pipeline.data.tables import collect, scan

# Race answers that carry no information become missing, not a group of their own.
UNKNOWN_RACE = ("UNKNOWN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER", "DECLINED TO ANSWER")
GROUPS = ("white", "black", "hispanic", "asian", "other")


def race_group(race: pl.Expr) -> pl.Expr:
    """MIMIC race text -> white / black / hispanic / asian / other (null when unknown).

    ``"WHITE - RUSSIAN"`` -> white, ``"BLACK/AFRICAN AMERICAN"`` -> black,
    ``"HISPANIC/LATINO - DOMINICAN"`` and ``"SOUTH AMERICAN"`` -> hispanic,
    ``"ASIAN - CHINESE"`` -> asian, e.g. ``"AMERICAN INDIAN/ALASKA NATIVE"`` -> other.
    """
    r = race.str.strip_chars().str.to_uppercase()
    return (
        pl.when(r.is_null() | r.is_in(UNKNOWN_RACE) | (r == ""))
        .then(None)
        .when(r.str.starts_with("WHITE") | (r == "PORTUGUESE"))
        .then(pl.lit("white"))
        .when(r.str.starts_with("BLACK"))
        .then(pl.lit("black"))
        .when(r.str.starts_with("HISPANIC") | (r == "SOUTH AMERICAN"))
        .then(pl.lit("hispanic"))
        .when(r.str.starts_with("ASIAN"))
        .then(pl.lit("asian"))
        .otherwise(pl.lit("other"))
    )


def ethnicity(tables: Mapping[str, Path | str], ecgs: pl.DataFrame) -> pl.DataFrame:
    """Per ECG (study_id) the ethnicity group: the linked admission's race, else the stay's.

    An admission whose race is unknown falls back to the ED stay's answer.
    """
    adm = scan(tables, "admissions", ["hadm_id", "race"]).unique("hadm_id")
    ed = scan(tables, "edstays", ["stay_id", "race"]).unique("stay_id")
    frame = collect(
        ecgs.lazy()
        .select("study_id", "hadm_id", "stay_id")
        .join(
            adm.select("hadm_id", race_group(pl.col("race")).alias("adm")), on="hadm_id", how="left"
        )
        .join(
            ed.select("stay_id", race_group(pl.col("race")).alias("ed")), on="stay_id", how="left"
        )
    )
    return frame.select(
        "study_id", pl.coalesce("adm", "ed").cast(pl.Utf8).alias("demographics_ethnicity")
    )
