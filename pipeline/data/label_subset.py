"""Diagnosis labels for a fraction of the training subjects (config ``label_fraction``).

As in the paper, stage 2 is "trained on the subset of the data containing ground-truth
diagnosis labels" while stage 1 keeps every training record with tabular data. When the
splits are made each training subject gets one seeded rank in [0, 1) (folds.parquet,
column ``label_rank``; validation and test subjects get none); at fraction f the subjects
with rank < f carry labels for every model trained on diagnoses. So the subsets are
patient-grouped, nested (the 10 % subset lies inside the 25 % one), never touch validation
or test subjects, and a change of f re-runs only the supervised stages: no re-split, no
re-shard, no stage 1.

Ranks are stratified on the label profile: the training subjects are dealt into
RANK_BLOCKS blocks by the same iterative stratification as the folds (labels, age bins,
sex), and a subject of block b gets rank (b + U(0, 1)) / RANK_BLOCKS. Every fraction that
is a multiple of 1 / RANK_BLOCKS (5 %, 10 %, 25 %, 50 %, ...) is thus a union of whole,
balanced blocks; other fractions add a random part of one block.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.checks import require
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

RANK_BLOCKS = 20  # 5 % steps
_RANK_STREAM = 22  # the within-block draws' own stream: default_rng([splits.seed, 22])


def ranks_from_blocks(block: np.ndarray, seed: int) -> np.ndarray:
    """(n,) rank in [0, 1) of units dealt into blocks 0..RANK_BLOCKS-1 (see module doc)."""
    rng = np.random.default_rng([seed, _RANK_STREAM])
    return (block + rng.random(block.size)) / RANK_BLOCKS


def labelled_train_ids(
    train_ids: Path, folds: Path, cohort: Path, fraction: float, out: Path
) -> int:
    """Write the training records of subjects with ``label_rank < fraction`` (as train_ids).

    With fraction 1.0 the output equals ``train_ids``. Returns the number of records.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    ranks = pl.read_parquet(folds)
    if "label_rank" not in ranks.columns:
        raise ValueError(f"{folds}: no column 'label_rank' (made before label_fraction; re-split)")
    ids = pl.read_parquet(train_ids)
    subjects = pl.read_parquet(cohort, columns=["study_id", "subject_id"])
    sel = ids.join(subjects, on="study_id", how="left").join(
        ranks.select("subject_id", "label_rank"), on="subject_id", how="left"
    )
    unranked = sel["label_rank"].is_null() | sel["label_rank"].is_nan()
    if unranked.any():
        raise ValueError(
            f"{folds}: {int(unranked.sum())} training record(s) of subjects without a "
            "label_rank (the folds predate the id lists; make the splits again)"
        )
    kept = sel.filter(pl.col("label_rank") < fraction)
    require(
        kept.height,
        1,
        f"label_fraction={fraction} leaves 0 of {ids.height:,} training records with "
        "diagnosis labels; raise label_fraction",
    )
    with atomic_path(out, suffix=".parquet") as tmp:
        kept.select(ids.columns).sort("study_id").write_parquet(tmp)
    log.info(
        "label_fraction %.3g: %d of %d training records (%d of %d subjects) carry labels",
        fraction, kept.height, ids.height, kept["subject_id"].n_unique(),
        sel["subject_id"].n_unique(),
    )  # fmt: skip
    return kept.height
