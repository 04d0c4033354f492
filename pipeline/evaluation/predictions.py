"""Loading and checking prediction files and label manifests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.manifests import label_descriptions, read_manifest_tsv

TASKS = ("diagnoses", "labs")
_ARRAYS = ("study_id", "prob", "target", "labels", "task")


@dataclass(frozen=True)
class Predictions:
    """One model's test-set predictions, rows sorted by study_id.

    Attributes:
        path: The file they came from (for messages).
        study_id: (N,) int64, strictly increasing.
        prob: (N, K) float64 predicted probabilities.
        target: (N, K) float64, 0/1 with NaN for missing.
        labels: (K,) label codes or lab target names.
        task: "diagnoses" or "labs".
    """

    path: Path
    study_id: np.ndarray
    prob: np.ndarray
    target: np.ndarray
    labels: np.ndarray
    task: str

    @property
    def model(self) -> str:
        return self.path.stem


def load_predictions(path: Path) -> Predictions:
    """Read a predictions ``.npz`` (contract in docs) and check it.

    Rows are sorted by study_id so that bootstrap resample ``b`` draws the same records for
    every model evaluated on the same test set.

    Raises:
        ValueError: naming the file and the offending array, label or count.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as npz:
        missing = [a for a in _ARRAYS if a not in npz.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; expected {list(_ARRAYS)}")
        study_id = np.asarray(npz["study_id"])
        prob = np.asarray(npz["prob"], dtype=np.float64)
        target = np.asarray(npz["target"], dtype=np.float64)
        labels = np.asarray(npz["labels"]).astype(str)
        task = str(npz["task"])
    n = study_id.shape[0]
    if study_id.ndim != 1 or n == 0:
        raise ValueError(f"{path}: study_id must be a non-empty 1-D array, got {study_id.shape}")
    if not np.issubdtype(study_id.dtype, np.integer):
        raise ValueError(f"{path}: study_id must be integer, got {study_id.dtype}")
    k = labels.shape[0]
    for name, arr in (("prob", prob), ("target", target)):
        if arr.shape != (n, k):
            raise ValueError(f"{path}: {name} has shape {arr.shape}, expected ({n}, {k})")
    if task not in TASKS:
        raise ValueError(f"{path}: task must be one of {TASKS}, got {task!r}")
    _check_values(path, prob, target, labels)
    if len(set(labels.tolist())) != k:
        raise ValueError(f"{path}: duplicate label names")
    order = np.argsort(study_id, kind="stable")
    study_id = study_id[order].astype(np.int64)
    if n > 1 and (np.diff(study_id) == 0).any():
        raise ValueError(
            f"{path}: {int((np.diff(study_id) == 0).sum())} duplicate study_id rows "
            "(predictions must have one row per record)"
        )
    return Predictions(path, study_id, prob[order], target[order], labels, task)


def _check_values(path: Path, prob: np.ndarray, target: np.ndarray, labels: np.ndarray) -> None:
    bad_prob = ~np.isfinite(prob) | (prob < 0) | (prob > 1)
    if bad_prob.any():
        cols = sorted(set(labels[np.nonzero(bad_prob)[1]].tolist()))
        raise ValueError(
            f"{path}: {int(bad_prob.sum())} prob values are not finite probabilities in [0, 1] "
            f"(labels {cols[:10]})"
        )
    bad_target = ~(np.isnan(target) | (target == 0) | (target == 1))
    if bad_target.any():
        cols = sorted(set(labels[np.nonzero(bad_target)[1]].tolist()))
        raise ValueError(
            f"{path}: {int(bad_target.sum())} target values are not 0, 1 or NaN "
            f"(labels {cols[:10]})"
        )


def check_paired(a: Predictions, b: Predictions) -> None:
    """Raise unless two models were evaluated on the same records, labels and targets.

    Both are sorted by study_id on loading, so equal id sets mean equal row order.
    """
    if a.study_id.shape != b.study_id.shape or not np.array_equal(a.study_id, b.study_id):
        only_a = np.setdiff1d(a.study_id, b.study_id).size
        only_b = np.setdiff1d(b.study_id, a.study_id).size
        raise ValueError(
            f"paired comparison needs the same test records: {a.path} has {only_a} records "
            f"not in {b.path}, which has {only_b} not in the first"
        )
    if not np.array_equal(a.labels, b.labels):
        raise ValueError(f"paired comparison needs the same labels in {a.path} and {b.path}")
    if not np.array_equal(a.target, b.target, equal_nan=True):
        raise ValueError(f"{a.path} and {b.path} disagree on the test targets")


def read_tsv(path: Path) -> pl.DataFrame:
    """A manifest TSV with every column as text (codes such as "0389" stay intact)."""
    return read_manifest_tsv(path)


def diagnosis_names(label_manifest: Path) -> dict[str, str]:
    """Label code -> description from the label manifest (code, description, count)."""
    return label_descriptions(label_manifest)


def lab_target_names(lab_target_manifest: Path) -> dict[str, str]:
    """Lab target -> readable name, e.g. "Potassium (Blood) high, > 5.1"."""
    df = read_manifest_tsv(lab_target_manifest, ["target", "lab", "direction"])
    names = {}
    for row in df.iter_rows(named=True):
        fluid = f" ({row['fluid']})" if row.get("fluid") else ""
        sign = {"high": ">", "low": "<"}.get(row["direction"], "")
        thr = f", {sign} {row['threshold']}" if row.get("threshold") and sign else ""
        names[row["target"]] = f"{row['lab']}{fluid} {row['direction']}{thr}"
    return names


def label_names_for(
    task: str, label_manifest: Path | None, lab_target_manifest: Path | None
) -> Mapping[str, str] | None:
    """The names that fit ``task`` (diagnoses: label manifest; labs: lab target manifest)."""
    if task == "diagnoses" and label_manifest is not None:
        return diagnosis_names(label_manifest)
    if task == "labs" and lab_target_manifest is not None:
        return lab_target_names(lab_target_manifest)
    return None
