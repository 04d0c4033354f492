"""Reading ECGs: WFDB source records and their preprocessing (for sharding), and the
shard store (for training).

:func:`read_record` reads one MIMIC-IV-ECG record and checks its header against the
protocol (lead set, sampling frequency, length, units). The release is uniform
(one ``.dat`` per record, format 16), so a strict parser of that layout reads the
header and signal ~30x faster than ``wfdb.rdrecord``, whose header parser dominates
the sharding time; any header outside that layout (other formats, several signal
files, skew or byte offsets) is read with ``wfdb.rdrecord`` instead.

:func:`signal_problem` (NaN interpolation, all-NaN / flat lead checks) and
:func:`resample` are the per-record preprocessing of the protocol.

:class:`ShardStore` serves shard records by study_id through memory maps.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
from scipy import fft as sp_fft
from scipy.signal import firwin, resample_poly

from pipeline.schema import LEADS, MISSING_ADC, UNITS

_GAIN = re.compile(r"^([-+\d.eE]+)(?:\(([-+\d]+)\))?(?:/(\S+))?$")


class RecordError(Exception):
    """A record that cannot be used; ``str(err)`` is the quarantine reason."""


@dataclass
class Record:
    """A checked record: (12, T) float32 mV in :data:`LEADS` order (NaN = missing)."""

    signal: np.ndarray
    base_datetime: datetime | None


@dataclass
class _Header:
    fs: float
    sig_len: int | None
    names: list[str]
    units: list[str]
    gains: list[float]
    baselines: list[int]
    fmts: list[str]
    files: list[str]
    base: datetime | None


def _base_datetime(time_s: str | None, date_s: str | None) -> datetime | None:
    """WFDB base time ``HH:MM:SS[.s]`` and date ``DD/MM/YYYY`` as one datetime."""
    if not time_s or not date_s:
        return None
    try:
        return datetime.strptime(f"{date_s} {time_s.split('.')[0]}", "%d/%m/%Y %H:%M:%S")
    except ValueError:
        return None


def _parse_header(text: str) -> _Header:
    """Parse a single-segment WFDB header (PhysioNet header format, signal lines)."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    rec = lines[0].split()
    n_sig = int(rec[1])
    fs = float(rec[2].split("/")[0]) if len(rec) > 2 else 250.0  # WFDB default
    sig_len = int(rec[3]) if len(rec) > 3 else None
    base = _base_datetime(rec[4] if len(rec) > 4 else None, rec[5] if len(rec) > 5 else None)
    h = _Header(fs, sig_len, [], [], [], [], [], [], base)
    if len(lines) < 1 + n_sig:
        raise ValueError(f"{n_sig} signals declared, {len(lines) - 1} signal lines")
    for line in lines[1 : 1 + n_sig]:
        f = line.split(maxsplit=8)
        m = _GAIN.match(f[2]) if len(f) > 2 else None
        adc_zero = int(f[4]) if len(f) > 4 else 0
        gain = float(m.group(1)) if m else 200.0
        h.files.append(f[0])
        h.fmts.append(f[1])
        h.gains.append(gain if gain != 0 else 200.0)  # 0 = uncalibrated: WFDB uses 200
        h.baselines.append(int(m.group(2)) if m and m.group(2) else adc_zero)
        h.units.append(m.group(3) if m and m.group(3) else "mV")
        h.names.append(f[8] if len(f) > 8 else "")
    return h


def _lead_order(
    names: list[str], fs: float, sig_len: int | None, units: list[str], fs_in: int, n_samples: int
) -> list[int]:
    """Header checks; returns the column of each lead of :data:`LEADS` in the file."""
    if sorted(names) != sorted(LEADS):
        raise RecordError(f"lead_set: {','.join(names)}")
    if fs != fs_in:
        raise RecordError(f"sampling_frequency: {fs:g} Hz, expected {fs_in}")
    if sig_len != n_samples:
        raise RecordError(f"length: {sig_len} samples, expected {n_samples}")
    bad_units = sorted({u for u in units if u != UNITS})
    if bad_units:
        raise RecordError(f"units: {','.join(bad_units)}, expected {UNITS}")
    return [names.index(lead) for lead in LEADS]


def _read_wfdb(base: Path, fs_in: int, n_samples: int) -> Record:
    """Read with ``wfdb.rdrecord`` (any header layout wfdb supports)."""
    import wfdb  # imported here: the native path does not need it

    try:
        r = wfdb.rdrecord(str(base))
    except ValueError as err:  # wfdb's message for a short .dat
        kind = "truncated_signal" if "not loaded correctly" in str(err) else "read_error"
        raise RecordError(f"{kind}: {err}") from None
    except Exception as err:
        raise RecordError(f"read_error: {type(err).__name__}: {err}") from None
    order = _lead_order(list(r.sig_name), float(r.fs), r.sig_len, list(r.units), fs_in, n_samples)
    base_dt = None
    if r.base_time is not None and r.base_date is not None:
        base_dt = datetime.combine(r.base_date, r.base_time).replace(microsecond=0)
    x = np.asarray(r.p_signal, dtype=np.float32)[:, order].T  # (12, T)
    return Record(np.ascontiguousarray(x), base_dt)


def read_record(base: Path, fs_in: int, n_samples: int, use_wfdb: bool = False) -> Record:
    """Read and check one WFDB record (``base`` without extension).

    Args:
        base: record path without extension (``<root>/files/.../<study_id>``).
        fs_in: required sampling frequency (Hz).
        n_samples: required samples per lead.
        use_wfdb: always read with ``wfdb.rdrecord`` (for comparison and benchmarks).

    Returns:
        The signal in mV, leads reordered to :data:`LEADS` by header name.

    Raises:
        RecordError: with a quarantine reason ``kind: detail``.
    """
    hea, dat = base.with_name(base.name + ".hea"), base.with_name(base.name + ".dat")
    if not hea.is_file():
        raise RecordError("missing_header")
    try:
        h = _parse_header(hea.read_text(errors="replace"))
    except (ValueError, IndexError) as err:
        raise RecordError(f"bad_header: {err}") from None
    order = _lead_order(h.names, h.fs, h.sig_len, h.units, fs_in, n_samples)
    if use_wfdb or set(h.fmts) != {"16"} or set(h.files) != {dat.name}:
        if not all((base.parent / f).is_file() for f in set(h.files)):
            raise RecordError("missing_signal")
        return _read_wfdb(base, fs_in, n_samples)
    if not dat.is_file():
        raise RecordError("missing_signal")
    n_sig, expected = len(h.names), n_samples * len(h.names) * 2
    size = dat.stat().st_size
    if size != expected:
        kind = "truncated_signal" if size < expected else "signal_size"
        raise RecordError(f"{kind}: {size} bytes, expected {expected}")
    d = np.fromfile(dat, dtype="<i2").reshape(n_samples, n_sig)[:, order].T  # (12, T) int16
    gains = np.asarray(h.gains, np.float32)[order, None]
    baselines = np.asarray(h.baselines, np.float32)[order, None]
    x = (d.astype(np.float32) - baselines) / gains
    x[d == MISSING_ADC] = np.nan  # WFDB's missing-sample code for format 16
    return Record(x, h.base)


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


class ShardStore:
    """Shard records by study_id, memory-mapped (``np.load(mmap_mode="r")``).

    Shard files are opened lazily and cached per process: after a DataLoader forks its
    workers, each one sees a different pid and opens its own maps, and pickling the store
    (spawned workers) drops the maps.

    Args:
        index_path: the merged ``results/shards/index.parquet``; its ``shard`` paths are
            relative to its directory.
    """

    def __init__(self, index_path: str | os.PathLike[str]) -> None:
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
            if not path.is_file():
                raise FileNotFoundError(f"shard file {path} (listed in {self.index_path}) missing")
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
