"""Reading one standard 12-lead WFDB record (shard stage and inference; other formats:
:mod:`pipeline.data.formats`, which returns the same :class:`Record`).

:func:`read_record` accepts any single-segment record holding the 12 standard leads:

* a path with or without ``.hea`` / ``.dat`` (:func:`record_base`);
* lead names in any spelling (:mod:`pipeline.data.leads`: ``aVR``/``AVR``/``avr``...),
  in any order; extra channels are ignored and returned in :attr:`Record.extra`;
* any whole sampling rate >= ``min_fs`` lasting ``n_samples / fs_in`` seconds (10 s);
  the caller resamples with :func:`pipeline.data.ecg_store.resample`;
* amplitudes in mV, uV or V (converted to mV).

MIMIC-IV-ECG is uniform (one ``.dat`` per record, format 16), so a strict parser of that
layout reads header and signal ~30x faster than ``wfdb.rdrecord``, whose header parser
dominates sharding time; any other layout (other formats, several signal files, skew or
byte offsets) is read with ``wfdb.rdrecord`` after the same header checks.

Refusals raise :class:`RecordError`, whose text is the quarantine reason ``kind: detail``
(kind: missing_header, missing_signal, bad_header, multi_segment, not_12_lead,
missing_lead, sampling_frequency, length, units, truncated_signal, signal_size,
read_error). A reason about a file names it (the base name: the quarantine and the
prediction table already give the record's path), and ``bad_header`` the line number and
the start of the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline.data.leads import LeadError, LeadMatch, match_leads
from pipeline.mimic_schema import MISSING_ADC

_GAIN = re.compile(r"^([-+\d.eE]+)(?:\(([-+\d]+)\))?(?:/(\S+))?$")
_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}  # -> mV
_SUFFIXES = (".hea", ".dat")


class RecordError(Exception):
    """A record that cannot be used; ``str(err)`` is the quarantine reason."""


@dataclass
class Record:
    """A checked record: (12, T) float32 mV in :data:`LEADS` order (NaN = missing).

    Attributes:
        signal: the 12 standard leads, (12, T) with T = duration x ``fs``.
        base_datetime: header base date and time, when given.
        fs: the record's sampling rate (Hz); not yet resampled.
        extra: names of the ignored channels.
        derived: leads computed from I and II because the file did not store them
            (:func:`pipeline.data.leads.derive_limb_leads`; other formats than WFDB).
    """

    signal: np.ndarray
    base_datetime: datetime | None
    fs: int = 500
    extra: tuple[str, ...] = field(default=())
    derived: tuple[str, ...] = field(default=())


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


def record_base(path: str | Path) -> Path:
    """The record path without a ``.hea`` / ``.dat`` extension (other suffixes are kept)."""
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in _SUFFIXES else path


def _base_datetime(time_s: str | None, date_s: str | None) -> datetime | None:
    """WFDB base time ``HH:MM:SS[.s]`` and date ``DD/MM/YYYY`` as one datetime."""
    if not time_s or not date_s:
        return None
    try:
        return datetime.strptime(f"{date_s} {time_s.split('.')[0]}", "%d/%m/%Y %H:%M:%S")
    except ValueError:
        return None


def _bad_line(hea: str, k: int, line: str, problem: str) -> RecordError:
    """``bad_header`` naming the file, the line number and (the start of) the line."""
    shown = line if len(line) <= 60 else line[:57] + "..."
    return RecordError(f"bad_header: {hea} line {k}: {problem} ({shown!r})")


def _parse_header(text: str, hea: str) -> _Header:
    """Parse a single-segment WFDB header (PhysioNet header format, signal lines).

    Args:
        text: the header's text.
        hea: its file name, for the refusal reasons.
    """
    lines = [(k, ln.strip()) for k, ln in enumerate(text.splitlines(), 1)]
    lines = [(k, ln) for k, ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise RecordError(f"bad_header: {hea} has no record line (empty or only comments)")
    k, line = lines[0]
    rec = line.split()
    if "/" in rec[0]:  # "name/n_segments": a multi-segment (or layout) header
        n_seg = rec[0].split("/", 1)[1]
        raise RecordError(
            f"multi_segment: multi-segment records are not supported ({n_seg} segments); "
            "give one 10 s 12-lead segment"
        )
    try:
        n_sig = int(rec[1])
        fs = float(rec[2].split("/")[0].split("(")[0]) if len(rec) > 2 else 250.0  # WFDB default
        sig_len = int(rec[3]) if len(rec) > 3 else None
    except IndexError:
        raise _bad_line(hea, k, line, "record line without a signal count") from None
    except ValueError as err:
        raise _bad_line(hea, k, line, f"record line: {err}") from None
    base = _base_datetime(rec[4] if len(rec) > 4 else None, rec[5] if len(rec) > 5 else None)
    h = _Header(fs, sig_len, [], [], [], [], [], [], base)
    if len(lines) < 1 + n_sig:
        raise RecordError(
            f"bad_header: {hea}: {n_sig} signals declared on line {k}, "
            f"{len(lines) - 1} signal line(s) follow"
        )
    for k, line in lines[1 : 1 + n_sig]:
        try:
            _parse_signal_line(line, h)
        except (IndexError, ValueError) as err:
            problem = "signal line without a format" if isinstance(err, IndexError) else str(err)
            raise _bad_line(hea, k, line, problem) from None
    return h


def _parse_signal_line(line: str, h: _Header) -> None:
    """Append one signal line's file, format, gain, baseline, units and name to ``h``."""
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


def _check(h: _Header, fs_in: int, n_samples: int, min_fs: int | None) -> tuple[LeadMatch, int]:
    """Header checks; returns the lead columns and the (whole) sampling rate."""
    try:
        match = match_leads(h.names)
    except LeadError as err:
        raise RecordError(str(err)) from None
    fs = round(h.fs)
    if min_fs is None:  # strict: only the nominal rate
        if h.fs != fs_in:
            raise RecordError(f"sampling_frequency: {h.fs:g} Hz, expected {fs_in}")
    elif h.fs != fs or fs < min_fs:
        raise RecordError(
            f"sampling_frequency: {h.fs:g} Hz; needs a whole rate >= {min_fs} Hz "
            "(the model's rate, reached by polyphase resampling)"
        )
    want = n_samples * fs / fs_in  # same duration as n_samples at fs_in (10 s)
    if h.sig_len != want:
        seconds = f" ({h.sig_len / fs:g} s)" if h.sig_len else ""
        raise RecordError(
            f"length: {h.sig_len} samples at {fs} Hz{seconds}, expected {want:g} "
            f"({n_samples / fs_in:g} s)"
        )
    bad = sorted({h.units[c] for c in match.columns if h.units[c].lower() not in _UNIT_SCALE})
    if bad:
        raise RecordError(f"units: {','.join(bad)}, expected mV (or uV, V)")
    return match, fs


def _read_wfdb(base: Path, columns: tuple[int, ...]) -> np.ndarray:
    """(T, 12) physical signal of the lead columns with ``wfdb.rdrecord`` (any layout)."""
    import wfdb  # imported here: the native path does not need it

    try:
        r = wfdb.rdrecord(str(base))
    except ValueError as err:  # wfdb's message for a short .dat
        kind = "truncated_signal" if "not loaded correctly" in str(err) else "read_error"
        raise RecordError(f"{kind}: {err}") from None
    except Exception as err:
        raise RecordError(f"read_error: {type(err).__name__}: {err}") from None
    return np.asarray(r.p_signal, dtype=np.float32)[:, list(columns)]


def _read_native(dat: Path, h: _Header, columns: tuple[int, ...]) -> np.ndarray:
    """(T, 12) physical signal from one interleaved format-16 ``.dat``; NaN = missing code."""
    n_sig, n_t = len(h.names), int(h.sig_len or 0)
    size, expected = dat.stat().st_size, n_t * n_sig * 2
    if size != expected:
        kind = "truncated_signal" if size < expected else "signal_size"
        raise RecordError(f"{kind}: {dat.name} is {size} bytes, expected {expected}")
    d = np.fromfile(dat, dtype="<i2").reshape(n_t, n_sig)[:, list(columns)]  # (T, 12) int16
    gains = np.asarray([h.gains[c] for c in columns], np.float32)
    baselines = np.asarray([h.baselines[c] for c in columns], np.float32)
    x = (d.astype(np.float32) - baselines) / gains
    x[d == MISSING_ADC] = np.nan  # WFDB's missing-sample code for format 16
    return x


def read_record(
    base: str | Path,
    fs_in: int,
    n_samples: int,
    use_wfdb: bool = False,
    *,
    min_fs: int | None = None,
) -> Record:
    """Read and check one WFDB record.

    Args:
        base: record path, with or without ``.hea`` / ``.dat``.
        fs_in: nominal sampling frequency (Hz); with ``n_samples`` it sets the duration.
        n_samples: samples per lead at ``fs_in`` (5000: 10 s at 500 Hz).
        use_wfdb: always read the signal with ``wfdb.rdrecord`` (comparison, benchmarks).
        min_fs: accept any whole rate >= this (records are resampled afterwards); None
            accepts ``fs_in`` only.

    Returns:
        The 12 leads in mV, reordered to :data:`LEADS` by header name, at the record's rate.

    Raises:
        RecordError: with a quarantine reason ``kind: detail``.
    """
    base = record_base(base)
    hea, dat = base.with_name(base.name + ".hea"), base.with_name(base.name + ".dat")
    if not hea.is_file():
        raise RecordError(f"missing_header: {hea.name} not found")
    h = _parse_header(hea.read_text(errors="replace"), hea.name)
    match, fs = _check(h, fs_in, n_samples, min_fs)
    missing = sorted({f for f in h.files if not (base.parent / f).is_file()})
    if missing:
        raise RecordError(f"missing_signal: {missing[0]} not found (named in {hea.name})")
    if use_wfdb or set(h.fmts) != {"16"} or set(h.files) != {dat.name}:
        x = _read_wfdb(base, match.columns)
    else:
        x = _read_native(dat, h, match.columns)
    scale = np.asarray([_UNIT_SCALE[h.units[c].lower()] for c in match.columns], np.float32)
    if (scale != 1).any():
        x = x * scale
    return Record(np.ascontiguousarray(x.T), h.base, fs, match.extra)
