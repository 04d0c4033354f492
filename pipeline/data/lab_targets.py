"""CardioLab lab-abnormality targets per ECG (Alcaraz & Strodthoff 2024, "CardioLab").

Candidate labs are the 45 protocol labels, each at its most frequent fluid, with at
least ``min_events`` events (non-null, plausible values) in the whole labevents table.
Thresholds are the median ``ref_range_lower`` and median ``ref_range_upper`` over that
lab's events, ignoring nulls and the 0/0 rows that mean "no range". For an ECG the
target value is the event closest in time within +-``window_minutes`` of ``ecg_time``
(ties: the earlier event); ``{lab}_low`` = value < lower, ``{lab}_high`` = value >
upper, each 1/0, null when no value. Only targets with a positive in the cohort get a
column; the per-fold ``min_per_class`` filter runs in the splits stage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.data.checks import require
from pipeline.data.labs import lab_items, slug, with_plausible
from pipeline.data.tables import collect, scan
from pipeline.io import atomic_path
from pipeline.mimic_schema import PROTOCOL_LABS

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "target",
    "lab",
    "fluid",
    "direction",
    "threshold",
    "n_events",
    "n_pos",
    "n_neg",
)


@dataclass(frozen=True)
class LabTargetConfig:
    """Config section ``lab_targets``.

    Attributes:
        window_minutes: the value closest to the ECG within +- this many minutes.
        min_events: labs with fewer (plausible) events in labevents are not targets.
        min_per_class: used by the splits stage (positives and negatives needed in
            both validation and test folds); carried here so the section maps 1:1.
    """

    window_minutes: int = 60
    min_events: int = 200
    min_per_class: int = 10


def _median_from_counts(counts: pl.DataFrame, value: str) -> pl.DataFrame:
    """Exact per-label median from (label, value, n) counts (mean of the middle two)."""
    ranked = counts.sort("label", value).with_columns(
        pl.col("n").cum_sum().over("label").alias("upto"),
        pl.col("n").sum().over("label").alias("total"),
    )

    # the k-th smallest value (0-based) is the first whose cumulative count exceeds k
    def kth(k: pl.Expr) -> pl.Expr:
        return pl.col(value).filter(pl.col("upto") > k).first()

    return ranked.group_by("label").agg(
        ((kth((pl.col("total") - 1) // 2) + kth(pl.col("total") // 2)) / 2).alias(value)
    )


def _thresholds(events: pl.LazyFrame) -> pl.DataFrame:
    """Per label: n_events and the medians of the lower and upper reference limits.

    Medians are computed from value counts: reference limits take few distinct values,
    so this stays exact while never holding every event's limits in memory.
    """
    measured = events.filter(pl.col("valuenum").is_not_null())
    n_events = collect(measured.group_by("label").len("n_events"))
    no_range = (pl.col("ref_range_lower") == 0) & (pl.col("ref_range_upper") == 0)
    ranged = measured.filter(~no_range.fill_null(False))
    out = n_events
    for col, name in (("ref_range_lower", "low"), ("ref_range_upper", "high")):
        counts = collect(
            ranged.filter(pl.col(col).is_not_null()).group_by("label", col).len("n")
        ).rename({col: name})
        out = out.join(_median_from_counts(counts, name), on="label", how="left")
    return out


def _closest(events: pl.LazyFrame, ecgs: pl.DataFrame, minutes: int) -> pl.DataFrame:
    """Per (study_id, label) the plausible value closest to ecg_time within +-minutes."""
    dist = (pl.col("charttime") - pl.col("ecg_time")).dt.total_seconds().abs()
    return collect(
        events.filter(pl.col("valuenum").is_not_null())
        .join(ecgs.lazy(), on="subject_id", how="inner")
        .with_columns(dist.alias("dist"))
        .filter(pl.col("dist") <= minutes * 60)
        .group_by("study_id", "label")
        .agg(pl.col("valuenum").sort_by(["dist", "charttime", "valuenum"]).first())
    )


def _targets(
    values: pl.DataFrame, labs: pl.DataFrame, ids: pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Wide Int8 target frame and manifest rows for every (lab, direction) with a positive."""
    frame = pl.DataFrame({"study_id": ids})
    manifest = []
    for lab in labs.sort("label").iter_rows(named=True):
        v = values.filter(pl.col("label") == lab["label"]).select("study_id", "valuenum")
        for direction, thr in (("low", lab["low"]), ("high", lab["high"])):
            if thr is None:
                continue
            cls = pl.col("valuenum") < thr if direction == "low" else pl.col("valuenum") > thr
            name = f"{slug(lab['label'])}_{direction}"
            col = v.select("study_id", cls.cast(pl.Int8).alias(name))
            n_pos = int(col[name].sum())
            if n_pos == 0:
                continue
            frame = frame.join(col, on="study_id", how="left")
            manifest.append(
                (
                    name,
                    lab["label"],
                    lab["fluid"],
                    direction,
                    thr,
                    lab["n_events"],
                    n_pos,
                    col.height - n_pos,
                )
            )
    schema = dict(zip(MANIFEST_COLUMNS, [pl.Utf8] * 4 + [pl.Float64] + [pl.Int64] * 3, strict=True))
    return frame, pl.DataFrame(manifest, schema=schema, orient="row")


def extract_lab_targets(
    cohort: Path,
    tables: Mapping[str, Path | str],
    out: Path,
    manifest_out: Path,
    cfg: LabTargetConfig,
) -> pl.DataFrame:
    """Write CardioLab targets (study_id + Int8 ``{lab}_{low|high}``) and their manifest.

    Args:
        cohort: cohort parquet (study_id, subject_id, ecg_time).
        tables: converted tables; uses labevents and d_labitems.
        out: lab targets parquet, one row per cohort ECG.
        manifest_out: TSV target, lab, fluid, direction, threshold, n_events, n_pos, n_neg.
        cfg: window, minimum events.

    Returns:
        The manifest frame.
    """
    ecgs = pl.read_parquet(cohort, columns=["study_id", "subject_id", "ecg_time"]).sort("study_id")
    items = lab_items(tables, PROTOCOL_LABS)
    events = with_plausible(
        scan(
            tables,
            "labevents",
            ["subject_id", "itemid", "charttime", "valuenum", "ref_range_lower", "ref_range_upper"],
        ).join(items.lazy().select("itemid", "label"), on="itemid", how="inner"),
        PROTOCOL_LABS,
    )
    every_lab = _thresholds(events).join(items.select("label", "fluid").unique(), on="label")
    labs = every_lab.filter(pl.col("n_events") >= cfg.min_events)
    log.info("%d labs with >= %d events", labs.height, cfg.min_events)
    most = every_lab.select(pl.col("n_events").max()).item() or 0
    require(
        labs.height,
        1,
        f"no protocol lab has lab_targets.min_events={cfg.min_events} events (highest: {most}); "
        "lower lab_targets.min_events or check source.mimic_iv (hosp/labevents, hosp/d_labitems)",
    )
    values = _closest(
        events.filter(pl.col("label").is_in(labs["label"].implode())), ecgs, cfg.window_minutes
    )
    frame, manifest = _targets(values, labs, ecgs["study_id"])
    require(
        manifest.height,
        1,
        f"no lab target has a positive among {ecgs.height:,} cohort ECGs within "
        f"lab_targets.window_minutes={cfg.window_minutes} of a lab value",
    )
    log.info(
        "%d targets with a positive; %d of %d ECGs with any lab within +-%d min",
        manifest.height,
        values["study_id"].n_unique(),
        ecgs.height,
        cfg.window_minutes,
    )
    with atomic_path(out, suffix=".parquet") as tmp:
        frame.write_parquet(tmp)
    with atomic_path(manifest_out, suffix=".tsv") as tmp:
        manifest.write_csv(tmp, separator="\t")
    return manifest
