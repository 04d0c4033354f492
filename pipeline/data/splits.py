"""Patient-grouped, stratified folds and the per-stage id lists that training reads.

Folds are assigned to patients (no subject in two folds) by iterative stratification
(Sechidis, Tsoumakas & Vlahavas 2011, "On the stratification of multi-label data"),
with patients as the units: each patient carries the union of its ECGs' diagnosis
labels plus a one-hot age bin and gender, so rare labels, age and sex spread evenly.
Alternatively a user split file (subject_id, fold) is validated and used as is.

The id lists (train / val / test) are what training reads; editing the splits
re-runs only this stage, training and evaluation, never extraction or sharding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.config_checks import split_role_errors
from pipeline.data.checks import require
from pipeline.data.label_subset import RANK_BLOCKS, ranks_from_blocks
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test")
EVAL_PARTS = ("val", "test")  # evaluated on the first ECG of each stay only
FOLDS_SCHEMA = {"subject_id": pl.Int64, "fold": pl.Int32}


@dataclass(frozen=True)
class SplitConfig:
    """The ``splits`` config section (``age_bins`` and ``label_chunk`` have code defaults).

    Attributes:
        n_folds: number of folds.
        seed: seed of the stratified assignment's tie breaks and visiting order.
        train_folds, val_folds, test_folds: fold roles; disjoint, each in [0, n_folds).
        file: optional user split file (csv/tsv/parquet with subject_id, fold).
        age_bins: age bin edges (years) used as stratification attributes.
        label_chunk: label columns aggregated per pass (bounds memory on ~1,500 labels).
    """

    n_folds: int
    seed: int
    train_folds: Sequence[int]
    val_folds: Sequence[int]
    test_folds: Sequence[int]
    file: str | None = None
    age_bins: Sequence[float] = (30, 40, 50, 60, 70, 80)
    label_chunk: int = 256

    def __post_init__(self) -> None:
        for key in ("train_folds", "val_folds", "test_folds", "age_bins"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        # the same checks the Snakefile runs before building the DAG
        errors = split_role_errors(self.n_folds, {f"{p}_folds": f for p, f in self.roles().items()})
        if errors:
            raise ValueError("; ".join(errors))

    def roles(self) -> dict[str, Sequence[int]]:
        """Folds of each part."""
        return {"train": self.train_folds, "val": self.val_folds, "test": self.test_folds}


@dataclass(frozen=True)
class SplitReport:
    """Counts only (safe to log)."""

    n_subjects: int
    n_records: int
    n_labels: int
    source: str  # "stratified" or the split file name
    fold_sizes: tuple[int, ...]  # subjects per fold


def _subjects(cohort: Path, age_bins: Sequence[float]) -> pl.DataFrame:
    """One row per subject: unit index u, age bin and gender at the first ECG."""
    return (
        pl.scan_parquet(cohort)
        .select("subject_id", "ecg_time", "age", "gender")
        .sort("subject_id", "ecg_time")
        .group_by("subject_id", maintain_order=True)
        .first()
        .with_columns(
            u=pl.int_range(pl.len(), dtype=pl.Int64),
            # bin number = edges at or below the age (0 .. len(edges)); null age stays null
            age_bin=pl.when(pl.col("age").is_not_null()).then(
                pl.sum_horizontal(*[(pl.col("age") >= e).cast(pl.Int64) for e in age_bins])
            ),
        )
        .collect()
    )


def _unit_attributes(
    cohort: Path, labels: Path, subjects: pl.DataFrame, cfg: SplitConfig
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs (unit, attribute) as two int arrays, plus the number of label columns.

    Attributes 0..K-1 are labels (union over the subject's ECGs), then age bins, then
    gender. Label columns are aggregated in chunks so memory stays bounded.
    """
    names = [c for c in pl.read_parquet_schema(labels) if c != "study_id"]
    ecg_unit = (
        pl.scan_parquet(cohort)
        .select("study_id", "subject_id")
        .join(subjects.lazy().select("subject_id", "u"), on="subject_id")
        .select("study_id", "u")
    )
    us, attrs = [], []
    for start in range(0, len(names), cfg.label_chunk):
        cols = names[start : start + cfg.label_chunk]
        agg = (
            pl.scan_parquet(labels)
            .select("study_id", *cols)
            .join(ecg_unit, on="study_id")
            .group_by("u")
            .agg(pl.col(cols).max())
            .collect()
        )
        mat = agg.select(cols).fill_null(0).to_numpy()  # (units with labels, chunk)
        r, c = np.nonzero(mat)
        us.append(agg["u"].to_numpy()[r])
        attrs.append(c + start)
    k = len(names)
    n_bins = len(cfg.age_bins) + 1
    age = subjects.filter(pl.col("age_bin").is_not_null())
    us.append(age["u"].to_numpy())
    attrs.append(age["age_bin"].to_numpy().astype(np.int64) + k)
    sex = subjects.filter(pl.col("gender").is_in(["F", "M"]))
    us.append(sex["u"].to_numpy())
    attrs.append((sex["gender"] == "M").to_numpy().astype(np.int64) + k + n_bins)
    return np.concatenate(us).astype(np.int64), np.concatenate(attrs).astype(np.int64), k


def iterative_stratification(
    units: np.ndarray, attrs: np.ndarray, n_units: int, n_folds: int, seed: int
) -> np.ndarray:
    """Assign units to folds, balancing every attribute (Sechidis et al. 2011, Alg. 1).

    Repeatedly take the attribute with the fewest unassigned units; give each of its
    units (in seeded random order) to the fold that still most needs that attribute,
    ties broken by the fold that most needs units, then at random. Units without any
    attribute go to the folds that most need units.

    Args:
        units, attrs: (n_pairs,) unit index and attribute index of each positive pair.
        n_units: number of units (patients).
        n_folds: number of folds (equal desired proportions).
        seed: seed of the visiting order and the final tie break.

    Returns:
        (n_units,) fold of each unit.
    """
    rng = np.random.default_rng(seed)
    n_attr = int(attrs.max()) + 1 if len(attrs) else 0
    by_unit = np.argsort(units, kind="stable")
    unit_ptr = np.searchsorted(units[by_unit], np.arange(n_units + 1))
    unit_attrs = attrs[by_unit]
    by_attr = np.argsort(attrs, kind="stable")
    attr_ptr = np.searchsorted(attrs[by_attr], np.arange(n_attr + 1))
    attr_units = units[by_attr]

    remaining = np.bincount(attrs, minlength=n_attr).astype(np.int64)
    need = np.tile(remaining / n_folds, (n_folds, 1))  # (F, A) positives still wanted
    need_size = np.full(n_folds, n_units / n_folds)  # (F,) units still wanted
    fold = np.full(n_units, -1, dtype=np.int64)

    def pick(scores: np.ndarray) -> int:
        best = np.flatnonzero(scores == scores.max())
        if len(best) > 1:
            sizes = need_size[best]
            best = best[sizes == sizes.max()]
        return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])

    while (remaining > 0).any():
        a = int(np.argmin(np.where(remaining > 0, remaining, np.iinfo(np.int64).max)))
        members = np.unique(attr_units[attr_ptr[a] : attr_ptr[a + 1]])
        members = rng.permutation(members[fold[members] < 0])
        for u in members:
            f = pick(need[:, a])
            fold[u] = f
            own = unit_attrs[unit_ptr[u] : unit_ptr[u + 1]]
            need[f, own] -= 1
            remaining[own] -= 1
            need_size[f] -= 1
    for u in rng.permutation(np.flatnonzero(fold < 0)):
        f = pick(need_size)
        fold[u] = f
        need_size[f] -= 1
    return fold


def _read_split_file(path: Path, subjects: pl.Series, n_folds: int) -> pl.DataFrame:
    """A user split file validated against the cohort's subjects."""
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} (splits.file) not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pl.read_parquet(path)
    elif suffix in (".csv", ".tsv", ".txt"):
        df = pl.read_csv(path, separator="," if suffix == ".csv" else "\t", infer_schema=False)
    else:
        raise ValueError(f"split file {path}: unknown format {suffix!r} (csv, tsv or parquet)")
    for col in FOLDS_SCHEMA:
        if col not in df.columns:
            raise ValueError(f"split file {path}: column {col!r} missing (found {df.columns})")
    try:
        df = df.select(pl.col(c).cast(t, strict=True) for c, t in FOLDS_SCHEMA.items())
    except pl.exceptions.InvalidOperationError as err:
        raise ValueError(f"split file {path}: subject_id and fold must be integers") from err
    for col in FOLDS_SCHEMA:
        if df[col].null_count():
            raise ValueError(f"split file {path}: column {col!r} has {df[col].null_count()} nulls")
    dup = df.filter(pl.col("subject_id").is_duplicated())["subject_id"].unique()
    if len(dup):
        raise ValueError(f"split file {path}: {len(dup)} subject_id(s) listed twice, e.g. {dup[0]}")
    bad = df.filter((pl.col("fold") < 0) | (pl.col("fold") >= n_folds))["fold"].unique().sort()
    if len(bad):
        raise ValueError(
            f"split file {path}: column 'fold' has {bad.to_list()} outside [0, n_folds={n_folds})"
        )
    missing = subjects.filter(~subjects.is_in(df["subject_id"].implode()))
    if len(missing):
        raise ValueError(
            f"split file {path}: {len(missing)} cohort subject(s) missing, e.g. {missing[0]}"
        )
    extra = df.height - df["subject_id"].is_in(subjects.implode()).sum()
    if extra:
        log.info("split file: %d subject(s) not in the cohort ignored", extra)
    return df.filter(pl.col("subject_id").is_in(subjects.implode()))


def make_splits(cohort: Path, labels: Path, out: Path, cfg: SplitConfig) -> SplitReport:
    """Write folds.parquet (subject_id Int64, fold Int32), one row per cohort subject.

    Args:
        cohort: cohort.parquet (study_id, subject_id, ecg_time, age, gender).
        labels: labels.parquet (study_id + one 0/1 column per label).
        out: folds.parquet, written atomically.
        cfg: split settings; with ``cfg.file`` the user's folds are validated and used.

    Returns:
        Counts per fold.
    """
    cohort, labels, out = Path(cohort), Path(labels), Path(out)
    subjects = _subjects(cohort, cfg.age_bins)
    n_records = pl.scan_parquet(cohort).select(pl.len()).collect().item()
    require(
        subjects.height,
        cfg.n_folds,
        f"{subjects.height} cohort subjects cannot fill splits.n_folds={cfg.n_folds} folds; "
        "lower splits.n_folds or use a larger cohort",
    )
    units, attrs, n_labels = _unit_attributes(cohort, labels, subjects, cfg)
    if cfg.file:
        folds = _read_split_file(Path(cfg.file), subjects["subject_id"], cfg.n_folds)
        source, n_labels_report = Path(cfg.file).name, 0
    else:
        fold = iterative_stratification(units, attrs, subjects.height, cfg.n_folds, cfg.seed)
        folds = pl.DataFrame({"subject_id": subjects["subject_id"], "fold": fold})
        source, n_labels_report = "stratified", n_labels
    folds = folds.cast(FOLDS_SCHEMA).sort("subject_id")  # type: ignore[arg-type]
    folds = folds.join(_ranks(subjects, folds, units, attrs, cfg), on="subject_id")
    assert not folds["subject_id"].is_duplicated().any(), "a subject in two folds"
    assert folds.height == subjects.height, "a cohort subject without a fold"
    with atomic_path(out, suffix=".parquet") as tmp:
        folds.write_parquet(tmp)
    sizes = np.bincount(folds["fold"].to_numpy(), minlength=cfg.n_folds)
    report = SplitReport(subjects.height, n_records, n_labels_report, source, tuple(sizes.tolist()))
    log.info(
        "%d subjects (%d ECGs) in %d folds (%s), subjects per fold %d-%d",
        report.n_subjects, n_records, cfg.n_folds, source, sizes.min(), sizes.max(),
    )  # fmt: skip
    return report


def _ranks(
    subjects: pl.DataFrame,
    folds: pl.DataFrame,
    units: np.ndarray,
    attrs: np.ndarray,
    cfg: SplitConfig,
) -> pl.DataFrame:
    """subject_id, label_rank (pipeline.data.label_subset; null outside the train folds)."""
    fold = subjects.select("subject_id").join(folds, on="subject_id", how="left")["fold"]
    train = fold.is_in(list(cfg.train_folds)).fill_null(False).to_numpy()
    index = np.cumsum(train) - 1  # unit -> index among the training units
    pairs = train[units]
    block = iterative_stratification(
        index[units[pairs]], attrs[pairs], int(train.sum()), RANK_BLOCKS, cfg.seed
    )
    ranks = np.full(train.size, np.nan)
    ranks[train] = ranks_from_blocks(block, cfg.seed)
    return pl.DataFrame({"subject_id": subjects["subject_id"], "label_rank": ranks}).with_columns(
        pl.col("label_rank").fill_nan(None)
    )


def stage_ids(
    folds: Path, cohort: Path, shard_index: Path, out: Mapping[str, Path], cfg: SplitConfig
) -> dict[str, int]:
    """Write the train / val / test id lists (study_id Int64, fold Int32).

    Val and test keep only each stay's first ECG; all parts keep only records present
    in the shard index (quarantined records cannot be trained or evaluated on).

    Returns:
        Records per part.
    """
    if set(out) != set(PARTS):
        raise ValueError(f"stage_ids: outputs must be {PARTS}, got {sorted(out)}")
    fold_df = pl.read_parquet(folds).cast(FOLDS_SCHEMA)  # type: ignore[arg-type]
    if fold_df["subject_id"].is_duplicated().any():
        raise ValueError(f"{folds}: a subject appears in two folds")
    ecgs = (
        pl.read_parquet(cohort, columns=["study_id", "subject_id", "first_in_stay"])
        .join(fold_df, on="subject_id", how="left")
    )  # fmt: skip
    n_missing = ecgs["fold"].null_count()
    if n_missing:
        raise ValueError(f"{folds}: {n_missing} cohort ECG(s) of subjects without a fold")
    sharded = pl.read_parquet(shard_index, columns=["study_id"])
    ecgs = ecgs.join(sharded, on="study_id", how="semi")
    parts = {}
    for part, part_folds in cfg.roles().items():
        sel = ecgs.filter(pl.col("fold").is_in(list(part_folds)))
        if part in EVAL_PARTS:
            sel = sel.filter(pl.col("first_in_stay"))
        require(  # before any list is written: no partial set of outputs
            sel.height,
            1,
            f"0 of {ecgs.height:,} sharded cohort ECGs fall in the {part} folds "
            f"{list(part_folds)}; check splits.{part}_folds or the split file (quarantined "
            "records, see shards/quarantine.tsv, are left out)",
        )
        parts[part] = sel.select(pl.col("study_id").cast(pl.Int64), pl.col("fold").cast(pl.Int32))
    for part, sel in parts.items():
        with atomic_path(out[part], suffix=".parquet") as tmp:
            sel.sort("study_id").write_parquet(tmp)
    counts = {part: sel.height for part, sel in parts.items()}
    log.info("id lists: %s", counts)
    return counts


def select_lab_targets(
    lab_targets: Path, val_ids: Path, test_ids: Path, out: Path, min_per_class: int
) -> list[str]:
    """Keep lab targets with >= ``min_per_class`` positives and negatives in val and test.

    Writes a TSV (target, n_pos_val, n_neg_val, n_pos_test, n_neg_test) of the kept
    targets, in lab_targets column order (CardioLab's selection rule).

    Returns:
        The kept target names.
    """
    targets = [c for c in pl.read_parquet_schema(lab_targets) if c != "study_id"]
    table = pl.DataFrame({"target": targets})
    lt = pl.scan_parquet(lab_targets)
    for part, ids in (("val", val_ids), ("test", test_ids)):
        sub = lt.join(pl.scan_parquet(ids).select("study_id"), on="study_id", how="semi")
        counts = sub.select(
            *[(pl.col(t) == 1).sum().alias(f"pos{i}") for i, t in enumerate(targets)],
            *[(pl.col(t) == 0).sum().alias(f"neg{i}") for i, t in enumerate(targets)],
        ).collect()
        table = table.with_columns(  # columns in order n_pos_val, n_neg_val, n_pos_test, ...
            pl.Series(
                f"n_pos_{part}", [counts[f"pos{i}"][0] for i in range(len(targets))], pl.Int64
            ),
            pl.Series(
                f"n_neg_{part}", [counts[f"neg{i}"][0] for i in range(len(targets))], pl.Int64
            ),
        )
    count_cols = [c for c in table.columns if c != "target"]
    kept = table.filter(pl.min_horizontal(count_cols) >= min_per_class) if targets else table
    best = table.select(pl.min_horizontal(count_cols).max()).item() if targets else 0
    require(
        kept.height,
        1,
        f"0 of {len(targets)} lab targets reach lab_targets.min_per_class={min_per_class} "
        f"positives and negatives in both val and test (best: {best or 0}); lower "
        "lab_targets.min_per_class or give val/test more folds",
    )
    with atomic_path(out, suffix=".tsv") as tmp:
        kept.write_csv(tmp, separator="\t")
    log.info(
        "lab targets: %d of %d kept (>= %d per class)", kept.height, len(targets), min_per_class
    )
    return kept["target"].to_list()
