"""Array files of research datasets: HDF5 (h5py), NumPy ``.npy`` and ``.npz``.

Arrays carry no rate, lead names or units, so these come from the user
(:class:`ArraySpec`: ``ecg-explain --fs --leads --units``). A file holds one recording
(2-D: samples x leads or leads x samples) or N (3-D: N x samples x leads, CODE-15's
``tracings`` N x 4096 x 12 at 400 Hz, or N x leads x samples); the lead axis is the one
whose length is the number of ``--leads``. Records are keyed by the file's exam ids
(a dataset / array ``exam_id`` of length N, as CODE-15 has) or else by position.

HDF5: the dataset ``tracings``, else the file's only 2-D/3-D dataset. ``.npz``: the array
``tracings``, else the only array (besides ``exam_id``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipeline.data.formats.common import Channels, unit_to_mv
from pipeline.data.wfdb_record import RecordError

ARRAY_FORMATS = ("hdf5", "npy", "npz")
_DATA, _IDS = "tracings", "exam_id"
T = TypeVar("T")


@dataclass(frozen=True)
class ArraySpec:
    """What an array file does not say: rate (Hz), lead order and amplitude unit."""

    fs: float | None = None
    leads: tuple[str, ...] | None = None
    units: str = "mV"


def _pick(names: list[str], where: str) -> str:
    if _DATA in names:
        return _DATA
    data = [n for n in names if n != _IDS]
    if len(data) != 1:
        raise RecordError(
            f"read_error: {where} holds {len(data)} arrays ({', '.join(data) or 'none'}); "
            f"name the signal array {_DATA!r}"
        )
    return data[0]


def _with_arrays(path: Path, fmt: str, use: Callable[[Any, Any], T]) -> T:
    """``use(data, ids)`` with the file's signal array and exam ids (None) while it is open."""
    try:
        if fmt == "hdf5":
            import h5py  # imported here: only HDF5 inputs need it

            with h5py.File(path, "r") as f:
                names = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
                name = _pick([n for n in names if f[n].ndim > 1 or n == _IDS], "HDF5 file")
                return use(f[name], f.get(_IDS))
        if fmt == "npz":
            with np.load(path, allow_pickle=False) as z:
                name = _pick(list(z.files), ".npz file")
                return use(z[name], z[_IDS] if _IDS in z.files else None)
        return use(np.load(path, mmap_mode="r", allow_pickle=False), None)
    except RecordError:
        raise
    except Exception as err:  # h5py / NumPy errors on damaged or foreign files
        raise RecordError(f"read_error: {fmt} file: {type(err).__name__}: {err}") from None


def array_items(path: str | Path, fmt: str) -> list[tuple[str, int | None]]:
    """(key suffix, item) of every recording in the file: ``#<exam id>`` / ``#<i>`` / ``""``.

    Raises:
        RecordError: the file cannot be opened or holds no 2-D / 3-D array.
    """

    def items(data: Any, ids: Any) -> list[tuple[str, int | None]]:
        if data.ndim == 2:
            return [("", None)]
        if data.ndim != 3:
            raise RecordError(f"read_error: array of shape {data.shape}, expected 2-D or 3-D")
        n = int(data.shape[0])
        keys = np.asarray(ids[()]).ravel().tolist() if ids is not None else []
        if len(keys) != n:  # no ids (or not one per exam): positions
            keys = list(range(n))
        return [(f"#{k}", i) for i, k in enumerate(keys)]

    return _with_arrays(Path(path), fmt, items)


def read_array(path: str | Path, fmt: str, item: int | None, spec: ArraySpec) -> Channels:
    """Recording ``item`` (None: the file's only one) in mV, leads named by ``spec``.

    Raises:
        RecordError: ``array_options`` (no --fs / --leads), ``not_12_lead`` (no axis of
            len(leads)), ``units``, ``read_error``.
    """
    if spec.fs is None or not spec.leads:
        raise RecordError(
            "array_options: array files carry no sampling rate or lead order; "
            "give --fs and --leads (e.g. --fs 400 --leads I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6)"
        )
    scale = unit_to_mv(spec.units, "--units")
    n_leads = len(spec.leads)

    def one(data: Any, ids: Any) -> np.ndarray:
        x = np.asarray(data[item] if item is not None else data[()], np.float32)  # (T, C) | (C, T)
        if x.ndim != 2 or n_leads not in x.shape:
            raise RecordError(
                f"not_12_lead: recording of shape {x.shape} has no axis of {n_leads} "
                "leads (--leads)"
            )
        return x.T if x.shape[1] == n_leads else x  # (C, T); CODE-15 layout when both fit

    x = _with_arrays(Path(path), fmt, one)
    return Channels(list(spec.leads), x * np.float32(scale), float(spec.fs))
