"""Keeping patient identifiers out of MLflow and logs: key and file screening.

Keys (parameter, metric, tag or column names) that name an identifier or a date column are
refused with ``ValueError``; counts such as ``n_study_ids`` are allowed.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# Column / key names that identify a patient, a stay or a record, or date them.
IDENTIFIER_NAMES = frozenset(
    {
        "subject_id",
        "hadm_id",
        "stay_id",
        "study_id",
        "note_id",
        "transfer_id",
        "labevent_id",
        "specimen_id",
        "pharmacy_id",
        "poe_id",
        "file_name",
        "ecg_time",
        "charttime",
        "storetime",
        "intime",
        "outtime",
        "admittime",
        "dischtime",
        "deathtime",
        "dod",
        "anchor_year",
    }
)
# Any key component containing one of these is refused too (e.g. "test_study_ids"), except
# counts ("n_study_ids").
_ID_STEMS = ("subject_id", "hadm_id", "stay_id", "study_id")


def _is_identifier(key: str) -> bool:
    for part in key.replace("/", ".").split("."):
        p = part.strip().lower()
        if p.startswith(("n_", "num_")):
            continue  # a count such as "n_study_ids" is not an identifier
        if p in IDENTIFIER_NAMES or any(stem in p for stem in _ID_STEMS):
            return True
    return False


def is_identifier(key: str) -> bool:
    """Whether a column or key name is a patient identifier or a date (never print its values)."""
    return _is_identifier(key)


def check_no_identifiers(keys: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` if any key names a patient identifier or a date column.

    Args:
        keys: Parameter, metric, tag or column names.
        what: What the keys are (for the message), e.g. "MLflow params".
    """
    bad = sorted({k for k in keys if _is_identifier(str(k))})
    if bad:
        raise ValueError(f"{what} must not name patient identifiers or dates; refused keys: {bad}")


def screen_artifact(path: Path) -> None:
    """Refuse an artifact that carries identifier columns or arrays.

    Tables (csv/tsv headers, parquet schemas), ``.npz`` array names and JSON keys are
    inspected; other files (plots, markdown) are passed as they cannot hold id columns
    in a form a reader would parse back. Raises ``ValueError`` naming the file.
    """
    suffix = path.suffix.lower()
    names: list[str] = []
    if suffix in {".csv", ".tsv"}:
        with path.open() as fh:
            header = fh.readline().strip()
        names = [c.strip().strip('"') for c in header.replace("\t", ",").split(",")]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        names = list(pq.read_schema(path).names)
    elif suffix == ".npz":
        with zipfile.ZipFile(path) as zf:
            names = [n.removesuffix(".npy") for n in zf.namelist()]
    elif suffix == ".json":
        names = list(_json_keys(json.loads(path.read_text())))
    if names:
        check_no_identifiers(names, f"MLflow artifact {path}")


def _json_keys(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _json_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _json_keys(v)
