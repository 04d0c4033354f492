"""Reading ECGs: the per-record preprocessing of WFDB source records (for sharding and
inference alike), and the shard store (for training).

:func:`read_record` (:mod:`pipeline.data.wfdb_record`) reads and checks one record;
:func:`signal_problem` (NaN interpolation, all-NaN / flat lead checks), :func:`resample`
and :func:`prepare` (clip, resample, float16) are the per-record preprocessing of the
protocol. :func:`load_checked` is read + check, the unit both callers use.

:class:`ShardStore` serves shard records by study_id through memory maps, after checking
every shard file against the sizes and hashes its index records.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from scipy import fft as sp_fft
from scipy.signal import firwin, resample_poly

from pipeline.data.shard_check import ShardError, verify_shards
from pipeline.data.wfdb_record import Record, RecordError, read_record, record_base
from pipeline.mimic_schema import LEADS

__all__ = [
    "Record",
    "RecordError",
    "ShardError",
    "ShardStore",
    "load_checked",
    "prepare",
    "read_record",
    "record_base",
    "resample",
    "signal_problem",
]


def _interpolate_nans(x: np.ndarray) -> None:
    """Linear interpolation over NaNs per lead, in place; edges take the nearest value.

    Args:
        x: (12, T) float32; no lead may be entirely NaN.
    """
    t = np.arange(x.shape[1])
    for lead in np.flatnonzero(np.isnan(x).any(axis=1)):
        bad = np.isnan(x[lead])
        x[lead, bad] = np.interp(t[bad], t[~bad], x[lead, ~bad])


def signal_problem(x: np.ndarray) -> str | None:
    """Interpolate NaNs in a (12, T) signal; return a quarantine reason or None."""
    all_nan = np.isnan(x).all(axis=1)
    if all_nan.any():
        return "all_nan_lead: " + ",".join(LEADS[i] for i in np.flatnonzero(all_nan))
    _interpolate_nans(x)
    flat = np.ptp(x, axis=1) == 0
    if flat.any():
        return "flat_lead: " + ",".join(LEADS[i] for i in np.flatnonzero(flat))
    return None


@functools.lru_cache(maxsize=8)
def _decimation_filter(down: int, n_fft: int) -> np.ndarray:
    """rfft of resample_poly's anti-aliasing FIR for ``up=1``: Kaiser window (beta 5),
    10 zero crossings per side, cutoff 1/down of Nyquist."""
    h = firwin(2 * 10 * down + 1, 1.0 / down, window=("kaiser", 5.0))
    return sp_fft.rfft(h, n_fft).astype(np.complex64)


def resample(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis, equal to ``scipy.signal.resample_poly``.

    For integer decimation (the default 500 -> 100 Hz) the same FIR filter is applied by
    FFT convolution over the whole batch (zero padding at the edges, like resample_poly),
    about 2x faster than its direct-form loop; other ratios call resample_poly.

    Args:
        x: (..., T) float32 signal.
        fs_in, fs_out: sampling frequencies in Hz.

    Returns:
        (..., ceil(T * fs_out / fs_in)) resampled signal.
    """
    g = math.gcd(fs_in, fs_out)
    up, down = fs_out // g, fs_in // g
    if up == down:
        return x.copy()
    if up != 1:
        return resample_poly(x, up, down, axis=-1)
    n_in, half = x.shape[-1], 10 * down
    n_fft = sp_fft.next_fast_len(n_in + 2 * half, real=True)
    spec = sp_fft.rfft(x, n_fft, axis=-1)  # (..., n_fft // 2 + 1)
    spec *= _decimation_filter(down, n_fft)
    full = sp_fft.irfft(spec, n_fft, axis=-1)  # (..., n_fft) linear convolution with h
    return full[..., half : half + n_in : down]  # zero-phase: output k is centred on k*down


def load_checked(
    base: str | Path, fs_in: int, n_samples: int, min_fs: int | None, use_wfdb: bool = False
) -> Record:
    """:func:`read_record`, then :func:`signal_problem` (NaNs interpolated in place).

    Raises:
        RecordError: the quarantine reason (header, signal or lead problem).
    """
    rec = read_record(base, fs_in, n_samples, use_wfdb, min_fs=min_fs)
    reason = signal_problem(rec.signal)
    if reason is not None:
        raise RecordError(reason)
    return rec


def prepare(records: Sequence[Record], fs_out: int, clip_mv: float, out_len: int) -> np.ndarray:
    """Clip to +-clip_mv, resample to ``fs_out`` and store as float16: (n, 12, out_len).

    Records are resampled in batches of equal rate (the FFT path amortises over a batch);
    every rate goes through :func:`resample`, i.e. resample_poly's Kaiser FIR filter.
    """
    out = np.empty((len(records), len(LEADS), out_len), np.float16)
    by_fs: dict[int, list[int]] = {}
    for i, rec in enumerate(records):
        by_fs.setdefault(rec.fs, []).append(i)
    for fs, rows in by_fs.items():
        x = np.stack([records[i].signal for i in rows])  # (n, 12, T)
        np.clip(x, -clip_mv, clip_mv, out=x)
        y = resample(x, fs, fs_out)  # (n, 12, L_out)
        if y.shape[-1] != out_len:  # read_record checked the duration: cannot happen
            raise AssertionError(f"{fs} Hz resampled to {y.shape[-1]} samples, not {out_len}")
        out[rows] = y.astype(np.float16)
    return out


class ShardStore:
    """Shard records by study_id, memory-mapped (``np.load(mmap_mode="r")``).

    Opening the store checks every shard file the index uses against the size and SHA-256
    the index records (:func:`pipeline.data.shard_check.verify_shards`; each file's hash
    once per process), so a damaged shard stops the job before it reads anything, with
    one line naming the file and the command that rebuilds it.

    Shard files are opened lazily and cached per process: after a DataLoader forks its
    workers, each one sees a different pid and opens its own maps, and pickling the store
    (spawned workers) drops the maps.

    Args:
        index_path: the merged ``results/shards/index.parquet``; its ``shard`` paths are
            relative to its directory.
        hashes: also compare the SHA-256 of each shard (False: sizes only).

    Raises:
        ShardError: a shard file is missing, or its size or content is not the recorded one.
    """

    def __init__(self, index_path: str | os.PathLike[str], *, hashes: bool = True) -> None:
        self.index_path = Path(index_path)
        self.root = self.index_path.parent
        idx = pl.read_parquet(self.index_path).sort("study_id")
        for col in ("study_id", "shard", "offset"):
            if col not in idx.columns:
                raise ValueError(f"{self.index_path}: column {col!r} missing")
        shard_names = idx["shard"].unique(maintain_order=True)
        self._shard_names: list[str] = shard_names.to_list()
        code = {name: i for i, name in enumerate(self._shard_names)}
        self.ids: np.ndarray = idx["study_id"].to_numpy().astype(np.int64)
        if len(self.ids) and (np.diff(self.ids) == 0).any():
            raise ValueError(f"{self.index_path}: duplicate study_id")
        self._shard = np.array([code[s] for s in idx["shard"].to_list()], dtype=np.int32)
        self._offset = idx["offset"].to_numpy().astype(np.int64)
        verify_shards(self.index_path, self._shard_names, hashes=hashes)
        self._maps: dict[int, np.ndarray] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _map(self, shard: int) -> np.ndarray:
        if self._pid != os.getpid():  # forked: maps of the parent are not ours
            self._maps, self._pid = {}, os.getpid()
        m = self._maps.get(shard)
        if m is None:
            path = self.root / self._shard_names[shard]
            if not path.is_file():  # removed after the store was opened
                raise ShardError(f"shard file {path} (listed in {self.index_path}) missing")
            m = self._maps[shard] = np.load(path, mmap_mode="r")
        return m

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Index rows of ``ids``; KeyError naming the first unknown id."""
        if len(self.ids) == 0:
            if len(ids):
                raise KeyError(f"study_id {ids[0]} not in {self.index_path} (empty index)")
            return ids
        pos = np.searchsorted(self.ids, ids).clip(0, len(self.ids) - 1)
        unknown = self.ids[pos] != ids
        if unknown.any():
            raise KeyError(f"study_id {ids[np.argmax(unknown)]} not in {self.index_path}")
        return pos

    def get(self, study_id: int) -> np.ndarray:
        """One record as float32 (12, L) mV."""
        row = self._rows(np.asarray([study_id], np.int64))[0]
        return np.asarray(self._map(int(self._shard[row]))[self._offset[row]], dtype=np.float32)

    def get_many(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """Several records as float32 (n, 12, L), in the order of ``ids``."""
        ids = np.asarray(ids, np.int64)
        rows = self._rows(ids)
        if len(rows) == 0:
            return np.empty((0, len(LEADS), 0), np.float32)
        first = self._map(int(self._shard[rows[0]]))
        out = np.empty((len(rows), *first.shape[1:]), np.float32)  # (n, 12, L)
        shards = self._shard[rows]
        for s in np.unique(shards):  # one fancy-index read per shard file
            sel = np.flatnonzero(shards == s)
            out[sel] = self._map(int(s))[self._offset[rows[sel]]]
        return out
