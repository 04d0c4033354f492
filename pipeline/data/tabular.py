"""Tabular preprocessing fitted on the training fold only.

MDS-ED (Alcaraz et al. 2025) imputes missing values with the median of the training folds
and adds an observed-mask column per feature. We additionally z-score continuous features
with training-fold statistics so that the MLP sees comparable scales (lab values span
orders of magnitude); the statistics travel with the model in ``model.json``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.manifests import read_manifest_tsv

log = logging.getLogger(__name__)

FeatureGroup = Literal["all", "routine"]
GROUPS: tuple[str, ...] = ("all", "routine")


@dataclass(frozen=True)
class TabularArrays:
    """Model-ready tabular inputs for N records, row i = ids[i]."""

    x_cont: np.ndarray  # (N, F) float32, imputed and standardised
    x_mask: np.ndarray  # (N, F) float32, 1 = observed
    x_cat: np.ndarray  # (N, C) int64, 0 = missing or unseen in training


@dataclass(frozen=True)
class TabularPreprocessor:
    """Imputation statistics and vocabularies fitted on the training ids.

    Attributes:
        group: feature group used ("all" or "routine").
        manifest: rows (column, group, kind) of the feature manifest that were used.
        continuous: continuous column names, model input order.
        median: training median per continuous column (0.0 when never observed).
        mean: training mean of observed values, used for standardisation.
        std: training standard deviation of observed values (1.0 when degenerate).
        categorical: categorical column names, model input order.
        vocab: per categorical column the training values; code = position + 1.
    """

    group: str
    manifest: tuple[dict[str, str], ...]
    continuous: tuple[str, ...]
    median: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    categorical: tuple[str, ...]
    vocab: Mapping[str, tuple[str, ...]]

    @property
    def n_continuous(self) -> int:
        return len(self.continuous)

    @property
    def cat_cardinalities(self) -> list[int]:
        """Embedding table sizes, index 0 reserved for missing/unknown."""
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def transform(
        self, features: pl.DataFrame, ids: np.ndarray, source: str = "features"
    ) -> TabularArrays:
        """Rows of ``features`` for ``ids`` (in that order) as imputed model inputs."""
        rows = _rows_for_ids(features, ids, source)
        missing_cols = [
            c for c in (*self.continuous, *self.categorical) if c not in features.columns
        ]
        if missing_cols:
            raise ValueError(f"{source}: feature columns missing: {missing_cols[:5]}")
        if self.continuous:
            raw = _continuous_matrix(features, self.continuous)[rows]  # (N, F) float64
        else:
            raw = np.zeros((len(ids), 0))
        observed = ~np.isnan(raw)
        filled = np.where(observed, raw, np.asarray(self.median)[None, :])
        x_cont = (filled - np.asarray(self.mean)[None, :]) / np.asarray(self.std)[None, :]
        x_cat = np.zeros((len(ids), len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            code = {v: i + 1 for i, v in enumerate(self.vocab[col])}
            values = features.get_column(col).cast(pl.Utf8).to_list()
            x_cat[:, j] = [code.get(values[r], 0) if values[r] is not None else 0 for r in rows]
        return TabularArrays(
            x_cont=x_cont.astype(np.float32),
            x_mask=observed.astype(np.float32),
            x_cat=x_cat,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["vocab"] = {k: list(v) for k, v in self.vocab.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TabularPreprocessor:
        return cls(
            group=str(d["group"]),
            manifest=tuple(dict(r) for r in d["manifest"]),
            continuous=tuple(d["continuous"]),
            median=tuple(float(v) for v in d["median"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            categorical=tuple(d["categorical"]),
            vocab={k: tuple(v) for k, v in d["vocab"].items()},
        )


def tabular_encoder_meta(tab_cfg: Mapping[str, Any], prep: TabularPreprocessor) -> dict[str, Any]:
    """How to rebuild a tabular encoder (model.json): its config section and feature layout."""
    return {
        "config": dict(tab_cfg),
        "n_continuous": prep.n_continuous,
        "cat_cardinalities": prep.cat_cardinalities,
    }


def read_manifest(path: Path, group: FeatureGroup) -> list[dict[str, str]]:
    """Manifest rows of the requested feature group ("all" keeps every row)."""
    if group not in GROUPS:
        raise ValueError(f"feature group must be one of {GROUPS}, got {group!r}")
    manifest = read_manifest_tsv(path, ["column", "group", "kind"])
    bad = set(manifest.get_column("kind").to_list()) - {"continuous", "categorical"}
    if bad:
        raise ValueError(f"{path}: unknown feature kind(s) {sorted(bad)}")
    if group == "routine":
        manifest = manifest.filter(pl.col("group") == "routine")
        if manifest.height == 0:
            raise ValueError(f"{path}: no feature has group 'routine'")
    return [
        {"column": str(r["column"]), "group": str(r["group"]), "kind": str(r["kind"])}
        for r in manifest.iter_rows(named=True)
    ]


def fit_tabular(
    features: pl.DataFrame,
    manifest: Sequence[Mapping[str, str]],
    train_ids: np.ndarray,
    group: FeatureGroup,
    source: str = "features",
) -> TabularPreprocessor:
    """Fit imputation statistics and vocabularies on the training ids only.

    Args:
        features: study_id plus feature columns (continuous Float64, categorical Utf8).
        manifest: rows of :func:`read_manifest`.
        train_ids: study_ids of the training fold; nothing else is looked at.
        group: the feature group the manifest was filtered with (recorded).
        source: file name used in error messages.
    """
    rows = _rows_for_ids(features, train_ids, source)
    continuous = tuple(r["column"] for r in manifest if r["kind"] == "continuous")
    categorical = tuple(r["column"] for r in manifest if r["kind"] == "categorical")
    missing = [c for c in (*continuous, *categorical) if c not in features.columns]
    if missing:
        raise ValueError(f"{source}: manifest columns missing from the table: {missing[:5]}")
    median, mean, std = _continuous_stats(features, continuous, rows)
    never = [c for c, m in zip(continuous, median, strict=True) if np.isnan(m)]
    if never:
        log.warning("%d continuous features never observed in training; imputed as 0", len(never))
    vocab: dict[str, tuple[str, ...]] = {}
    for col in categorical:
        values = features.get_column(col).cast(pl.Utf8).gather(rows).drop_nulls().unique()
        vocab[col] = tuple(sorted(values.to_list()))
    return TabularPreprocessor(
        group=group,
        manifest=tuple(dict(r) for r in manifest),
        continuous=continuous,
        median=tuple(0.0 if np.isnan(m) else float(m) for m in median),
        mean=tuple(0.0 if np.isnan(m) else float(m) for m in mean),
        std=tuple(float(s) if np.isfinite(s) and s > 1e-12 else 1.0 for s in std),
        categorical=categorical,
        vocab=vocab,
    )


def tabular_inputs(
    features: Path | Sequence[Path],
    manifest: Path,
    group: FeatureGroup,
    ids: Mapping[str, np.ndarray],
) -> tuple[TabularPreprocessor, dict[str, TabularArrays]]:
    """The setup every stage with a tabular branch shares (pre-training and the multimodal
    models): statistics fitted on ``ids["train"]`` only, and the arrays of every part.

    Args:
        features: features.parquet, or several feature tables (:func:`read_features`).
        manifest: feature_manifest.tsv.
        group: the feature group ("all" or "routine").
        ids: part name -> study_ids; must include "train".
    """
    paths = [Path(features)] if isinstance(features, str | Path) else [Path(p) for p in features]
    frame = read_features(paths)
    src = " + ".join(map(str, paths))
    prep = fit_tabular(frame, read_manifest(manifest, group), ids["train"], group, src)
    return prep, {part: prep.transform(frame, v, src) for part, v in ids.items()}


def read_features(paths: Sequence[Path]) -> pl.DataFrame:
    """Feature tables stacked: the first table's columns, taken from every table.

    Further tables (stage 1's out-of-cohort records, :mod:`pipeline.data.beyond`) may carry
    more columns (the record's path and time), which are dropped.

    Raises:
        ValueError: a table lacks one of the first's columns, or a study_id is repeated.
    """
    first = pl.read_parquet(paths[0])
    parts = [first]
    for path in paths[1:]:
        schema = pl.read_parquet_schema(path)
        missing = [c for c in first.columns if c not in schema]
        if missing:
            raise ValueError(
                f"{path}: feature column {missing[0]!r} missing ({len(missing)} in all; "
                f"the columns of {paths[0]} are expected)"
            )
        parts.append(pl.read_parquet(path, columns=first.columns).cast(first.schema))
    frame = pl.concat(parts)
    if len(parts) > 1 and frame["study_id"].is_duplicated().any():
        raise ValueError(f"{' + '.join(map(str, paths))}: a study_id is in two feature tables")
    return frame


def _continuous_stats(
    features: pl.DataFrame, columns: Sequence[str], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not columns:
        empty = np.zeros(0)
        return empty, empty, empty
    x = _continuous_matrix(features, columns)[rows]  # (N_train, F)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns handled by caller
        return np.nanmedian(x, axis=0), np.nanmean(x, axis=0), np.nanstd(x, axis=0)


def _continuous_matrix(features: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    return (
        features.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy().astype(np.float64)
    )


def _rows_for_ids(features: pl.DataFrame, ids: np.ndarray, source: str) -> np.ndarray:
    """Row positions in ``features`` of each id; raises if any id has no row."""
    if "study_id" not in features.columns:
        raise ValueError(f"{source}: no study_id column")
    table_ids = features.get_column("study_id").to_numpy().astype(np.int64)
    order = np.argsort(table_ids, kind="stable")
    sorted_ids = table_ids[order]
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
    found = sorted_ids[pos] == ids if len(sorted_ids) else np.zeros(len(ids), dtype=bool)
    if not found.all():
        raise ValueError(f"{source}: {int((~found).sum())} of {len(ids)} records have no row")
    return order[pos]
