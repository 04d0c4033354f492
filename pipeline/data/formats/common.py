"""What every ECG file reader hands over, and the checks that turn it into a :class:`Record`.

A format reader (:mod:`pipeline.data.formats`) only decodes its file: channel labels as the
file spells them, samples already scaled to mV from the format's own units and scale, and
the sampling rate. :func:`to_record` then applies the guarantees of the WFDB reader
(:mod:`pipeline.data.wfdb_record`) to every format alike:

* leads matched by name in any spelling (:func:`pipeline.data.leads.canonical_lead`);
  extra channels ignored and listed;
* III, aVR, aVL and aVF derived from I and II when the file stores only the 8 independent
  leads (GE MUSE does), and listed in :attr:`Record.derived`;
* any whole rate >= ``min_fs`` (resampled afterwards, as for WFDB);
* 10 s of signal. Array datasets pad shorter recordings to a fixed length (CODE-15 stores
  4096 samples at 400 Hz, 10.24 s), so up to :data:`PAD_TOLERANCE_S` more than 10 s is
  cut to the centred 10 s; anything shorter or longer is refused.

Refusals raise :class:`RecordError` with the quarantine reason ``kind: detail``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from pipeline.data.leads import (
    INDEPENDENT,
    LeadError,
    canonical_lead,
    derive_limb_leads,
    match_leads,
)
from pipeline.data.wfdb_record import Record, RecordError
from pipeline.mimic_schema import LEADS

#: longest excess over 10 s cut away (centred) instead of refusing the record
PAD_TOLERANCE_S = 1.0

#: unit spellings (lower case) of the formats -> factor to mV
UNIT_TO_MV: dict[str, float] = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}


@dataclass
class Channels:
    """A decoded recording before any check.

    Attributes:
        names: channel labels as the file spells them, one per row of ``signal``.
        signal: (C, T) float32 in mV (NaN = missing sample).
        fs: sampling rate in Hz.
        base_datetime: acquisition time when the file gives it.
        ignored: labels of channels the reader left out (other rates or units).
    """

    names: list[str]
    signal: np.ndarray
    fs: float
    base_datetime: datetime | None = None
    ignored: list[str] = field(default_factory=list)


def unit_to_mv(unit: str, where: str) -> float:
    """Factor from ``unit`` to mV; RecordError ``units`` naming the unit and where it was."""
    factor = UNIT_TO_MV.get(unit.strip().lower())
    if factor is None:
        raise RecordError(f"units: {unit or 'none'} ({where}), expected mV (or uV, V)")
    return factor


def _leads(ch: Channels) -> tuple[dict[str, np.ndarray], list[str], tuple[str, ...]]:
    """Canonical lead -> (T,) signal, ignored channel names, derived lead names."""
    found: dict[str, np.ndarray] = {}
    extra: list[str] = []
    for name, row in zip(ch.names, ch.signal, strict=True):
        lead = canonical_lead(name)
        if lead is None or lead in found:
            extra.append(name)
        else:
            found[lead] = row
    derived: tuple[str, ...] = ()
    if all(lead in found for lead in INDEPENDENT):
        derived = derive_limb_leads(found)
    if any(lead not in found for lead in LEADS):
        try:
            match_leads(ch.names)  # raises with the names missing from the file
        except LeadError as err:
            raise RecordError(f"{err} (III, aVR, aVL, aVF can be derived from I and II)") from None
    return found, extra, derived


def _window(n: int, fs: int, fs_in: int, n_samples: int) -> slice:
    """The centred 10 s of ``n`` samples at ``fs``; RecordError ``length`` otherwise."""
    want = n_samples * fs // fs_in
    if want * fs_in != n_samples * fs or not want <= n <= want + PAD_TOLERANCE_S * fs:
        raise RecordError(
            f"length: {n} samples at {fs} Hz ({n / fs:g} s), expected {n_samples / fs_in:g} s "
            f"(a 10 s rhythm strip; up to {PAD_TOLERANCE_S:g} s of padding is cut)"
        )
    start = (n - want) // 2
    return slice(start, start + want)


def to_record(ch: Channels, fs_in: int, n_samples: int, min_fs: int) -> Record:
    """Check a decoded recording and return its 12 leads in :data:`LEADS` order.

    Args:
        ch: the reader's output (mV).
        fs_in: nominal rate (Hz); with ``n_samples`` it sets the duration (10 s).
        n_samples: samples per lead at ``fs_in``.
        min_fs: lowest whole rate accepted (records are resampled afterwards).

    Raises:
        RecordError: ``not_12_lead`` / ``missing_lead``, ``sampling_frequency``, ``length``.
    """
    fs = round(ch.fs)
    if abs(ch.fs - fs) > 1e-6 * fs or fs < min_fs:
        raise RecordError(
            f"sampling_frequency: {ch.fs:g} Hz; needs a whole rate >= {min_fs} Hz "
            "(the model's rate, reached by polyphase resampling)"
        )
    found, extra, derived = _leads(ch)
    window = _window(ch.signal.shape[1], fs, fs_in, n_samples)
    x = np.stack([np.asarray(found[lead], np.float32)[window] for lead in LEADS])  # (12, T)
    extras = (*extra, *ch.ignored)
    return Record(np.ascontiguousarray(x), ch.base_datetime, fs, extras, derived)
