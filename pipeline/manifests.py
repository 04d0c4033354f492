"""The pipeline's TSV manifests, read in one place.

``label_manifest.tsv`` (code, description, count), ``lab_target_manifest.tsv`` and
``lab_targets_selected.tsv`` (target, ...), ``feature_manifest.tsv`` (column, group, kind) and
an exported model's ``labels.tsv`` / ``lab_targets.tsv`` are all tab-separated with a header.
Training, evaluation and inference read them through :func:`read_manifest_tsv`, which keeps
every cell as text: an ICD code such as "0389" must not lose its leading zero to type
inference, and a missing column is named with the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl


def read_manifest_tsv(path: str | Path, required: Sequence[str] = ()) -> pl.DataFrame:
    """A manifest with every column as text.

    Raises:
        ValueError: If a ``required`` column is missing (names the file and the column).
    """
    table = pl.read_csv(path, separator="\t", infer_schema=False)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no {missing[0]!r} column (has {table.columns})")
    return table


def manifest_column(path: str | Path, column: str) -> list[str]:
    """One column of a manifest (label codes, lab target names), in file order.

    Raises:
        ValueError: If the column is missing or has an empty cell.
    """
    values = read_manifest_tsv(path, [column]).get_column(column).to_list()
    if any(v is None for v in values):
        raise ValueError(f"{path}: empty {column!r} value")
    return [str(v) for v in values]


def label_descriptions(path: str | Path) -> dict[str, str]:
    """Label code -> description from a label manifest (or an exported ``labels.tsv``)."""
    table = read_manifest_tsv(path, ["code", "description"])
    return dict(zip(table["code"].to_list(), table["description"].to_list(), strict=True))
