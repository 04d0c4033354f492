"""Lab definitions shared by features and lab targets: (label, fluid) choice, slugs, caps.

MDS-ED and CardioLab (Alcaraz et al. 2025; Alcaraz & Strodthoff 2024) group lab events
by ``(d_labitems.label, fluid)`` rather than by itemid and keep, per label, the fluid
with the most events in the whole labevents table (so "pH" means urine pH in MIMIC-IV,
where urine pH outnumbers blood-gas pH).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl

from pipeline.data.tables import collect, scan

# Values outside these bounds are implausible (device errors, placeholder numbers) and
# become missing. The protocol names ALT, AST, ALP, CK, glucose, lactate and platelets
# > 2000; the percentage and pH (0-14) bounds are physical limits; every other lab (except
# Base Excess, which is signed) must be non-negative.
_UPPER_2000 = (
    "Alanine Aminotransferase (ALT)",
    "Asparate Aminotransferase (AST)",
    "Alkaline Phosphatase",
    "Creatine Kinase (CK)",
    "Glucose",
    "Lactate",
    "Platelet Count",
)
_PERCENT = (
    "Bands",
    "Basophils",
    "Carboxyhemoglobin",
    "Eosinophils",
    "Hematocrit",
    "Lymphocytes",
    "Neutrophils",
    "Oxygen Saturation",
)
PLAUSIBLE: dict[str, tuple[float | None, float | None]] = (
    {lab: (0.0, 2000.0) for lab in _UPPER_2000}
    | {lab: (0.0, 100.0) for lab in _PERCENT}
    | {"pH": (0.0, 14.0), "Base Excess": (None, None)}
)
DEFAULT_BOUNDS: tuple[float | None, float | None] = (0.0, None)


def slug(label: str) -> str:
    """Contract slug of a lab label: non-alphanumerics collapsed to ``_``.

    ``"Calcium, Total"`` -> ``"Calcium_Total"``, ``"INR(PT)"`` -> ``"INR_PT"``.
    """
    return re.sub(r"[^0-9A-Za-z]+", "_", label).strip("_")


def with_plausible(
    events: pl.LazyFrame, labels: Iterable[str], value: str = "valuenum"
) -> pl.LazyFrame:
    """Null the ``value`` column of ``events`` (which carry ``label``) where implausible."""
    bounds = pl.LazyFrame(
        [(lab, *PLAUSIBLE.get(lab, DEFAULT_BOUNDS)) for lab in labels],
        schema={"label": pl.Utf8, "lo": pl.Float64, "hi": pl.Float64},
        orient="row",
    )
    v = pl.col(value)
    bad = (v < pl.col("lo")).fill_null(False) | (v > pl.col("hi")).fill_null(False)
    return (
        events.join(bounds, on="label", how="left")
        .with_columns(pl.when(bad).then(None).otherwise(v).alias(value))
        .drop("lo", "hi")
    )


def lab_items(tables: Mapping[str, Path | str], labels: Iterable[str]) -> pl.DataFrame:
    """The itemids of each label's most frequent fluid.

    Events are counted per itemid over the whole labevents table (a streaming scan of
    one column), summed per (label, fluid); ties go to the alphabetically first fluid.

    Returns:
        Columns itemid, label, fluid, n_events (events of the chosen (label, fluid)),
        one row per itemid of the chosen pairs.
    """
    wanted = list(labels)
    items = collect(scan(tables, "d_labitems", ["itemid", "label", "fluid"])).filter(
        pl.col("label").is_in(wanted)
    )
    counts = collect(
        scan(tables, "labevents", ["itemid"])
        .filter(pl.col("itemid").is_in(items["itemid"].implode()))
        .group_by("itemid")
        .len("n")
    )
    per_item = items.join(counts, on="itemid", how="left").with_columns(pl.col("n").fill_null(0))
    per_pair = per_item.group_by("label", "fluid").agg(pl.col("n").sum().alias("n_events"))
    best = (
        per_pair.filter(pl.col("n_events") > 0)
        .sort(["label", "n_events", "fluid"], descending=[False, True, False])
        .group_by("label", maintain_order=True)
        .first()
    )
    return per_item.join(best, on=["label", "fluid"], how="inner").select(
        "itemid", "label", "fluid", "n_events"
    )
