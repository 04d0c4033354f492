"""MDS-ED tabular features per ECG (Alcaraz et al. 2025, "MDS-ED").

Groups and columns (names follow MDS-ED's ``mds-ed-feature-columns`` list, with lab
labels slugged to lower-case ``[a-z0-9_]`` so that ``"Calcium, Total"`` gives
``labvalues_calcium_total_mean`` rather than MDS-ED's ``labvalues_calcium,_total_mean``):

- demographics (routine): ``demographics_age``, ``demographics_gender``,
  ``demographics_ethnicity`` (white / black / hispanic / asian / other; unknown -> null);
  race from the linked admission, else from the ED stay.
- biometrics (routine): ``biometrics_{bmi,weight,height}`` from omr, the value closest to
  the ECG date within +-``omr_window_days`` (weight lbs -> kg, height in -> cm, outliers
  dropped before choosing).
- vitals (routine): ``vitals_{v}_{stat}`` for the 6 ED vitals over [intime, intime +
  window]; the triage measurement enters as one more measurement at minute 0 (triage
  happens at arrival and is often the only set in the window); temperature F -> C
  (values <= 50 are taken as already Celsius); physiological caps. ``vitals_acuity``
  (triage ESI 1-5, categorical).
- labs (lab): ``labvalues_{lab}_{stat}`` for the 45 protocol labs over the same window,
  grouped by (label, most frequent fluid), implausible values dropped.

Stats: mean, median, min, max, std (ddof 1), first, last, rate_change = (last - first) /
first, coeff = least-squares slope of value against minutes since intime. Missing stays
missing (no imputation here). labevents is never loaded whole: a lazy scan joined to
the cohort's stays is filtered to the windows by the streaming engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.data.demographics import ethnicity
from pipeline.data.labs import lab_items, slug, with_plausible
from pipeline.data.tables import collect, scan
from pipeline.io import atomic_path, write_text_atomic
from pipeline.mimic_schema import PROTOCOL_LABS, VITALS

log = logging.getLogger(__name__)

# Times are whole seconds apart at least (var >= ~1e-4 min^2); below this, all equal.
_MIN_VAR = 1e-9
STATS = ("mean", "median", "min", "max", "std", "first", "last", "rate_change", "coeff")
VITAL_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (25.0, 45.0),  # Celsius, after conversion
    "heartrate": (1.0, 300.0),
    "resprate": (1.0, 80.0),
    "o2sat": (1.0, 100.0),
    "sbp": (1.0, 300.0),
    "dbp": (1.0, 250.0),
}
LBS_TO_KG, IN_TO_CM = 0.45359237, 2.54
# omr result_name -> (feature, factor to SI-ish unit, lower cap, upper cap)
OMR_ITEMS: dict[str, tuple[str, float, float, float]] = {
    "BMI (kg/m2)": ("bmi", 1.0, 10.0, 100.0),
    "BMI": ("bmi", 1.0, 10.0, 100.0),
    "Weight (Lbs)": ("weight", LBS_TO_KG, 20.0, 350.0),
    "Weight": ("weight", LBS_TO_KG, 20.0, 350.0),
    "Height (Inches)": ("height", IN_TO_CM, 100.0, 250.0),
    "Height": ("height", IN_TO_CM, 100.0, 250.0),
}
BIOMETRICS = ("bmi", "weight", "height")


@dataclass(frozen=True)
class FeatureConfig:
    """Config section ``features``.

    Attributes:
        window_minutes: labs and vitals over [intime, intime + window_minutes].
        omr_window_days: biometrics closest to the ECG date within +- this many days.
    """

    window_minutes: int = 90
    omr_window_days: int = 30


def lab_prefix(label: str) -> str:
    """Feature prefix of a protocol lab: ``"Calcium, Total"`` -> ``labvalues_calcium_total``."""
    return f"labvalues_{slug(label).lower()}"


def _window_stats(events: pl.LazyFrame) -> pl.LazyFrame:
    """The 9 statistics per (stay_id, name) of events with columns t (minutes), value."""
    v = pl.col("value").sort_by(["t", "value"])
    t = pl.col("t")
    var_t = t.var()
    return events.group_by("stay_id", "name").agg(
        pl.col("value").mean().alias("mean"),
        pl.col("value").median().alias("median"),
        pl.col("value").min().alias("min"),
        pl.col("value").max().alias("max"),
        pl.col("value").std().alias("std"),
        v.first().alias("first"),
        v.last().alias("last"),
        pl.when(v.first() != 0).then((v.last() - v.first()) / v.first()).alias("rate_change"),
        pl.when(var_t > _MIN_VAR).then(pl.cov(t, pl.col("value")) / var_t).alias("coeff"),
    )


def _align(keys: pl.DataFrame, part: pl.DataFrame, on: str) -> pl.DataFrame:
    """``part``'s columns gathered onto the rows of ``keys`` (same order), key dropped."""
    return keys.select(on).join(part, on=on, how="left", maintain_order="left").drop(on)


def _wide(stats: pl.DataFrame, prefixes: Mapping[str, str], keys: pl.DataFrame) -> pl.DataFrame:
    """(stay_id, name, 9 stats) -> columns ``{prefix}_{stat}`` aligned to ``keys`` rows.

    Each name's 9 columns are gathered onto the ECG rows on their own and the pieces
    stacked side by side: no pivot (slow over ~400 generated names) and no chain of
    joins that would copy the growing wide frame once per lab.
    """
    parts = [
        _align(
            keys,
            stats.filter(pl.col("name") == name).select(
                "stay_id", *[pl.col(s).cast(pl.Float64).alias(f"{prefix}_{s}") for s in STATS]
            ),
            "stay_id",
        )
        for name, prefix in prefixes.items()
    ]
    return pl.concat(parts, how="horizontal")


def _in_window(frame: pl.LazyFrame, stays: pl.LazyFrame, on: str, minutes: int) -> pl.LazyFrame:
    """Join events to stays and keep those in [intime, intime + minutes]; add t."""
    end = pl.col("intime") + pl.duration(minutes=minutes)
    return (
        frame.join(stays, on=on, how="inner")
        .filter(pl.col("charttime").is_between(pl.col("intime"), end))
        .with_columns(
            ((pl.col("charttime") - pl.col("intime")).dt.total_seconds() / 60.0).alias("t")
        )
    )


def lab_features(
    tables: Mapping[str, Path | str], stays: pl.DataFrame, keys: pl.DataFrame, minutes: int
) -> pl.DataFrame:
    """Lab statistics over each window [intime, intime + minutes] of ``stays`` (stay_id,
    subject_id, intime), one row per row of ``keys`` (study_id, stay_id)."""
    items = lab_items(tables, PROTOCOL_LABS)
    log.info(
        "labs: %d of %d protocol labels present", items["label"].n_unique(), len(PROTOCOL_LABS)
    )
    events = scan(tables, "labevents", ["subject_id", "itemid", "charttime", "valuenum"]).join(
        items.lazy().select("itemid", "label"), on="itemid", how="inner"
    )
    windowed = _in_window(events, stays.lazy(), "subject_id", minutes)
    cleaned = with_plausible(windowed, PROTOCOL_LABS).select(
        "stay_id", pl.col("label").alias("name"), "t", pl.col("valuenum").alias("value")
    )
    stats = collect(_window_stats(cleaned.filter(pl.col("value").is_not_null())))
    return _wide(stats, {lab: lab_prefix(lab) for lab in PROTOCOL_LABS}, keys)


def _vital_values(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Unpivot the 6 vitals into (stay_id, t, name, value); convert and cap."""
    long = frame.unpivot(index=["stay_id", "t"], on=list(VITALS), variable_name="name")
    v = pl.col("value")
    celsius = pl.when(v > 50).then((v - 32) * 5 / 9).otherwise(v)
    long = long.with_columns(
        pl.when(pl.col("name") == "temperature").then(celsius).otherwise(v).alias("value")
    )
    bounds = pl.LazyFrame(
        [(k, lo, hi) for k, (lo, hi) in VITAL_BOUNDS.items()],
        schema={"name": pl.Utf8, "lo": pl.Float64, "hi": pl.Float64},
        orient="row",
    )
    return (
        long.join(bounds, on="name", how="left")
        .filter(v.is_between(pl.col("lo"), pl.col("hi")))
        .select("stay_id", "name", "t", "value")
    )


def vital_features(
    tables: Mapping[str, Path | str], stays: pl.DataFrame, keys: pl.DataFrame, minutes: int
) -> pl.DataFrame:
    """ED vital statistics and acuity of each stay of ``stays`` over [intime, intime +
    minutes], one row per row of ``keys`` (a null stay_id gives nulls)."""
    vitals = scan(tables, "vitalsign", ["stay_id", "charttime", *VITALS])
    timed = _in_window(vitals, stays.lazy().select("stay_id", "intime"), "stay_id", minutes)
    triage = scan(tables, "triage", ["stay_id", *VITALS]).join(
        stays.lazy().select("stay_id"), on="stay_id", how="semi"
    )
    both = pl.concat(
        [
            timed.select("stay_id", "t", *VITALS),
            triage.with_columns(pl.lit(0.0).alias("t")).select("stay_id", "t", *VITALS),
        ]
    )
    stats = collect(_window_stats(_vital_values(both)))
    wide = _wide(stats, {v: f"vitals_{v}" for v in VITALS}, keys)
    acuity = collect(
        scan(tables, "triage", ["stay_id", "acuity"])
        .join(stays.lazy().select("stay_id"), on="stay_id", how="semi")
        .group_by("stay_id")
        .agg(pl.col("acuity").drop_nulls().first())
        .select(
            "stay_id",
            pl.when(pl.col("acuity").is_in([1.0, 2.0, 3.0, 4.0, 5.0]))
            .then(pl.col("acuity").cast(pl.Int64).cast(pl.Utf8))
            .alias("vitals_acuity"),
        )
    )
    return pl.concat([wide, _align(keys, acuity, "stay_id")], how="horizontal")


def biometrics(tables: Mapping[str, Path | str], cohort: pl.DataFrame, days: int) -> pl.DataFrame:
    """Per ECG the omr value closest to the ECG date within +-days, per biometric."""
    spec = pl.LazyFrame(
        [(k, *v) for k, v in OMR_ITEMS.items()],
        schema={
            "result_name": pl.Utf8,
            "name": pl.Utf8,
            "f": pl.Float64,
            "lo": pl.Float64,
            "hi": pl.Float64,
        },
        orient="row",
    )
    ecgs = cohort.lazy().select("study_id", "subject_id", pl.col("ecg_time").dt.date().alias("day"))
    value = pl.col("result_value").str.strip_chars().cast(pl.Float64, strict=False) * pl.col("f")
    dist = (pl.col("chartdate") - pl.col("day")).dt.total_days().abs()
    closest = collect(
        scan(tables, "omr", ["subject_id", "chartdate", "seq_num", "result_name", "result_value"])
        .join(spec, on="result_name", how="inner")
        .with_columns(value.alias("value"))
        .filter(pl.col("value").is_between(pl.col("lo"), pl.col("hi")))
        .join(ecgs, on="subject_id", how="inner")
        .with_columns(dist.alias("dist"))
        .filter(pl.col("dist") <= days)
        .sort(["dist", "chartdate", "seq_num", "value"])
        .group_by("study_id", "name")
        .agg(pl.col("value").first())
    )
    wide = (
        closest.pivot(on="name", index="study_id", values="value")
        if closest.height
        else pl.DataFrame(schema={"study_id": pl.Int64})
    )
    cols = [
        pl.col(b).cast(pl.Float64) if b in wide.columns else pl.lit(None, pl.Float64)
        for b in BIOMETRICS
    ]
    return wide.select(
        "study_id", *[c.alias(f"biometrics_{b}") for c, b in zip(cols, BIOMETRICS, strict=True)]
    )


def _manifest(features: pl.DataFrame) -> str:
    lines = ["column\tgroup\tkind"]
    for col, dtype in features.schema.items():
        if col == "study_id":
            continue
        group = "lab" if col.startswith("labvalues_") else "routine"
        kind = "categorical" if dtype == pl.Utf8 else "continuous"
        lines.append(f"{col}\t{group}\t{kind}")
    return "\n".join(lines) + "\n"


def extract_features(
    cohort: Path,
    tables: Mapping[str, Path | str],
    out: Path,
    manifest_out: Path,
    cfg: FeatureConfig,
) -> pl.DataFrame:
    """Compute the MDS-ED features of every cohort ECG and write them with a manifest.

    Args:
        cohort: the cohort parquet of :func:`pipeline.data.cohort.extract_cohort`.
        tables: converted tables; uses labevents, d_labitems, vitalsign, triage, omr,
            admissions, edstays.
        out: features parquet (study_id + feature columns, one row per cohort ECG).
        manifest_out: TSV with column, group (routine|lab), kind (continuous|categorical).
        cfg: windows.

    Returns:
        The feature frame that was written.
    """
    ecgs = pl.read_parquet(cohort).sort("study_id")
    stays = ecgs.select("stay_id", "subject_id", "intime").unique()
    log.info("features for %d ECGs in %d stays", ecgs.height, stays.height)
    keys = ecgs.select("study_id", "stay_id")  # every part is aligned to these rows
    demo = ecgs.select(
        "study_id",
        pl.col("age").alias("demographics_age"),
        pl.col("gender").alias("demographics_gender"),
    )
    features = pl.concat(
        [
            demo,
            _align(keys, ethnicity(tables, ecgs), "study_id"),
            _align(keys, biometrics(tables, ecgs, cfg.omr_window_days), "study_id"),
            vital_features(tables, stays, keys, cfg.window_minutes),
            lab_features(tables, stays, keys, cfg.window_minutes),
        ],
        how="horizontal",
    )
    for group in ("biometrics_", "vitals_", "labvalues_"):
        cols = [c for c in features.columns if c.startswith(group)]
        n_any = features.select(pl.any_horizontal(pl.col(cols).is_not_null()).sum()).item()
        log.info(
            "%s: %d columns, %d of %d ECGs with any value",
            group.rstrip("_"),
            len(cols),
            n_any,
            features.height,
        )
    with atomic_path(out, suffix=".parquet") as tmp:
        features.write_parquet(tmp)
    write_text_atomic(manifest_out, _manifest(features))
    return features
