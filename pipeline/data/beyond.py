"""ECGs beyond the ED cohort for stage 1: out-of-cohort records with time-matched tabular data.

Stage 1 needs an ECG and its tabular partner, not diagnosis labels. MIMIC-IV-ECG holds
~800 k ECGs; the ED cohort (:mod:`pipeline.data.cohort`) keeps those taken within 90
minutes after an ED intime. This module takes every other record_list ECG and computes
the cohort's feature columns (:mod:`pipeline.data.features`) for it:

- demographics: age at the ECG and gender from patients (the cohort's rule); ethnicity
  from the ED stay's admission, else the admission whose [admittime, dischtime] contains
  the ECG, else the stay's own answer (:func:`pipeline.data.demographics.ethnicity`);
- biometrics: omr, the value closest to the ECG date (the cohort's rule);
- labs: the protocol labs over [ecg_time - h, ecg_time + h] (``lab_window_hours``), the
  same 9 statistics, with time counted from the window start. The default h = 1 is the
  protocol's ECG-to-lab window (CardioLab: the value closest within +-60 min of the ECG,
  ``lab_targets.window_minutes``); the cohort's own window [intime, intime + 90 min]
  holds an ECG taken up to 90 min after intime, so its labs lie within about this
  distance of the ECG too;
- vitals: from the ED stay whose window holds the ECG (such an ECG is out of the cohort
  for lack of diagnosis codes only); every other ECG has no ED stay and no vitals, which
  the tabular branch sees as masked (:mod:`pipeline.data.tabular`: observed-mask columns,
  training-median imputation).

An ECG is kept when its subject has a patients row with anchor age and year and it has at
least one lab or vital value in its window ("tabular data matched in time"); every other
one is listed with the reason. Which kept ECGs stage 1 may train on is decided against
the folds by :func:`beyond_train_ids` (fold discipline).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.data.cohort import match_stays, with_age
from pipeline.data.demographics import ethnicity
from pipeline.data.features import FeatureConfig, biometrics, lab_features, vital_features
from pipeline.data.splits import FOLDS_SCHEMA, SplitConfig
from pipeline.data.tables import collect, scan
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

RECORD_COLUMNS = ("study_id", "subject_id", "ecg_time", "path")
MATCHED_GROUPS = ("labvalues_", "vitals_")  # the time-matched part of the tabular data


@dataclass(frozen=True)
class BeyondConfig:
    """Config section ``beyond_cohort``.

    Attributes:
        enabled: stage 1 (pretrain and pretrain_ecg_only) also trains on the kept
            out-of-cohort ECGs; read by the workflow only.
        lab_window_hours: labs within +- this many hours of the ECG.
    """

    enabled: bool = False
    lab_window_hours: float = 1.0

    def __post_init__(self) -> None:
        if not self.lab_window_hours > 0:
            raise ValueError(
                f"beyond_cohort.lab_window_hours must be > 0, got {self.lab_window_hours}"
            )

    @property
    def lab_window_minutes(self) -> int:
        """The half-width of the lab window in whole minutes."""
        return max(round(self.lab_window_hours * 60), 1)


@dataclass(frozen=True)
class BeyondStats:
    """ECG counts after each step (no identifiers)."""

    n_records: int
    n_out_of_cohort: int
    n_with_patient: int
    n_kept: int
    n_with_ed_stay: int
    n_subjects: int


def _out_of_cohort(tables: Mapping[str, Path | str], cohort: Path) -> pl.DataFrame:
    """record_list rows of ECGs that are not cohort ECGs, by study_id."""
    records = collect(scan(tables, "record_list", ["subject_id", "study_id", "ecg_time", "path"]))
    in_cohort = pl.read_parquet(cohort, columns=["study_id"])
    return records.join(in_cohort, on="study_id", how="anti").sort("study_id")


def _with_patient(tables: Mapping[str, Path | str], ecgs: pl.DataFrame) -> pl.DataFrame:
    """Age at the ECG and gender, as the cohort computes them; ECGs without both anchors go."""
    return collect(with_age(ecgs.lazy(), tables).drop("anchor_age", "anchor_year").sort("study_id"))


def _links(tables: Mapping[str, Path | str], ecgs: pl.DataFrame, ed_minutes: int) -> pl.DataFrame:
    """Per ECG (rows of ``ecgs``): the ED stay whose window holds it (stay_id, intime) and an
    admission (hadm_id: the stay's, else the admission whose stay contains the ECG)."""
    key = ecgs.lazy().select("study_id", "subject_id", "ecg_time")
    stays = scan(tables, "edstays", ["subject_id", "stay_id", "hadm_id", "intime"])
    matched = match_stays(key, stays, pl.duration(minutes=ed_minutes))
    admitted = (
        scan(tables, "admissions", ["subject_id", "hadm_id", "admittime", "dischtime"])
        .join(key, on="subject_id", how="inner")
        .filter(pl.col("ecg_time").is_between(pl.col("admittime"), pl.col("dischtime")))
        .sort("study_id", "admittime", "hadm_id")
        .group_by("study_id", maintain_order=True)
        .agg(pl.col("hadm_id").first().alias("admission"))
    )
    return collect(
        key.select("study_id")
        .join(matched.select("study_id", "stay_id", "intime", "hadm_id"), on="study_id", how="left")
        .join(admitted, on="study_id", how="left")
        .select(
            "study_id", "stay_id", "intime", pl.coalesce("hadm_id", "admission").alias("hadm_id")
        )
        .sort("study_id")
    )


def _features(
    tables: Mapping[str, Path | str],
    ecgs: pl.DataFrame,
    links: pl.DataFrame,
    cfg: BeyondConfig,
    feature_cfg: FeatureConfig,
) -> pl.DataFrame:
    """The cohort's feature columns for ``ecgs`` (sorted by study_id, as ``links``)."""
    stay_keys = links.select("study_id", "stay_id")
    stays = links.filter(pl.col("stay_id").is_not_null()).select("stay_id", "intime").unique()
    # Each ECG is its own lab window: features' window helpers key a window by stay_id.
    half = cfg.lab_window_minutes
    windows = ecgs.select(
        pl.col("study_id").alias("stay_id"),
        "subject_id",
        (pl.col("ecg_time") - pl.duration(minutes=half)).alias("intime"),
    )
    lab_keys = ecgs.select("study_id", pl.col("study_id").alias("stay_id"))
    eth = ethnicity(tables, links.select("study_id", "hadm_id", "stay_id"))
    bio = biometrics(tables, ecgs, feature_cfg.omr_window_days)
    return pl.concat(
        [
            ecgs.select(
                "study_id",
                pl.col("age").alias("demographics_age"),
                pl.col("gender").alias("demographics_gender"),
            ),
            _gather(ecgs, eth),
            _gather(ecgs, bio),
            vital_features(tables, stays, stay_keys, feature_cfg.window_minutes),
            lab_features(tables, windows, lab_keys, 2 * half),
        ],
        how="horizontal",
    )


def _gather(ecgs: pl.DataFrame, part: pl.DataFrame) -> pl.DataFrame:
    """``part``'s columns on the rows of ``ecgs`` (same order), study_id dropped."""
    return (
        ecgs.select("study_id")
        .join(part, on="study_id", how="left", maintain_order="left")
        .drop("study_id")
    )


def _like_cohort(features: pl.DataFrame, cohort_features: Path) -> pl.DataFrame:
    """``features`` with exactly the cohort feature table's columns, order and dtypes."""
    schema = pl.read_parquet_schema(cohort_features)
    missing = [c for c in schema if c not in features.columns]
    if missing:
        raise ValueError(
            f"{cohort_features}: column {missing[0]!r} has no out-of-cohort counterpart "
            f"({len(missing)} in all); re-run extract_features with this version"
        )
    return features.select(pl.col(c).cast(dtype) for c, dtype in schema.items())


def extract_beyond(
    tables: Mapping[str, Path | str],
    cohort: Path,
    cohort_features: Path,
    out: Path,
    dropped_out: Path,
    cfg: BeyondConfig,
    feature_cfg: FeatureConfig,
    ed_window_minutes: int = 90,
) -> BeyondStats:
    """Write the out-of-cohort ECGs with time-matched tabular data and their features.

    Args:
        tables: converted tables; uses record_list, patients, edstays, admissions and the
            feature tables (labevents, d_labitems, vitalsign, triage, omr).
        cohort: the cohort parquet (its ECGs are left out).
        cohort_features: the cohort's feature table; ``out`` carries its columns.
        out: parquet, one row per kept ECG: :data:`RECORD_COLUMNS` (what shard_ecg reads),
            then the cohort's feature columns (study_id once), sorted by study_id.
        dropped_out: TSV (study_id, reason) of every out-of-cohort ECG not kept.
        cfg: the lab window; feature_cfg: the cohort's windows (omr days, vitals minutes);
        ed_window_minutes: the cohort's ED window (which ECGs have an ED stay).
    """
    ecgs_all = _out_of_cohort(tables, cohort)
    n_records = ecgs_all.height + pl.read_parquet(cohort, columns=["study_id"]).height
    ecgs = _with_patient(tables, ecgs_all)
    links = _links(tables, ecgs, ed_window_minutes)
    features = _like_cohort(_features(tables, ecgs, links, cfg, feature_cfg), cohort_features)
    matched = [c for c in features.columns if c.startswith(MATCHED_GROUPS)]
    has_data = features.select(pl.any_horizontal(pl.col(matched).is_not_null())).to_series()
    kept = pl.concat(
        [ecgs.select(RECORD_COLUMNS), features.drop("study_id")], how="horizontal"
    ).filter(has_data)
    stats = BeyondStats(
        n_records=n_records,
        n_out_of_cohort=ecgs_all.height,
        n_with_patient=ecgs.height,
        n_kept=kept.height,
        n_with_ed_stay=int(links.filter(has_data)["stay_id"].is_not_null().sum()),
        n_subjects=kept["subject_id"].n_unique(),
    )
    log.info(
        "beyond the cohort: %d of %d ECGs are out of the cohort; %d with a patients row; "
        "%d kept (a lab within +-%g h or ED vitals; %d with an ED stay) of %d subjects",
        stats.n_out_of_cohort, stats.n_records, stats.n_with_patient, stats.n_kept,
        cfg.lab_window_hours, stats.n_with_ed_stay, stats.n_subjects,
    )  # fmt: skip
    dropped = pl.concat(
        [
            _reason(ecgs_all, ecgs, "no patients row or anchor year/age"),
            _reason(ecgs, kept, f"no lab within +-{cfg.lab_window_hours:g} h and no ED vitals"),
        ]
    ).sort("study_id")
    with atomic_path(dropped_out, suffix=".tsv") as tmp:
        dropped.write_csv(tmp, separator="\t")
    with atomic_path(out, suffix=".parquet") as tmp:
        kept.write_parquet(tmp)
    return stats


def _reason(before: pl.DataFrame, after: pl.DataFrame, reason: str) -> pl.DataFrame:
    """(study_id, reason) of the rows of ``before`` that ``after`` lacks."""
    return (
        before.select("study_id")
        .join(after.select("study_id"), on="study_id", how="anti")
        .with_columns(pl.lit(reason).alias("reason"))
    )


def beyond_train_ids(
    beyond: Path, folds: Path, shard_index: Path, out: Path, cfg: SplitConfig
) -> dict[str, int]:
    """The out-of-cohort ECGs stage 1 may train on (study_id Int64, fold Int32).

    Fold discipline: a subject of the cohort keeps its fold, so its ECGs enter only when
    that fold is a training fold (never a validation or test subject's, nor one of a fold
    no part uses); a subject outside the cohort has no fold and is never evaluated, so
    its ECGs enter (fold null). Records missing from ``shard_index`` (quarantined) are
    left out.

    Returns:
        Counts: kept, held out (validation, test or unused folds), not sharded.
    """
    records = pl.read_parquet(beyond, columns=["study_id", "subject_id"])
    fold_df = pl.read_parquet(folds).cast(FOLDS_SCHEMA)  # type: ignore[arg-type]
    with_fold = records.join(fold_df, on="subject_id", how="left")
    allowed = pl.col("fold").is_null() | pl.col("fold").is_in(list(cfg.train_folds))
    admitted = with_fold.filter(allowed)
    sharded = admitted.join(
        pl.read_parquet(shard_index, columns=["study_id"]), on="study_id", how="semi"
    )
    counts = {
        "kept": sharded.height,
        "held_out": records.height - admitted.height,
        "not_sharded": admitted.height - sharded.height,
    }
    log.info("out-of-cohort training records: %s", counts)
    ids = sharded.select(pl.col("study_id").cast(pl.Int64), pl.col("fold").cast(pl.Int32))
    with atomic_path(out, suffix=".parquet") as tmp:
        ids.sort("study_id").write_parquet(tmp)
    return counts
