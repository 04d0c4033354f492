"""DICOM waveforms (12-lead ECG Waveform Storage, General ECG) read with pydicom.

A DICOM ECG holds one or more multiplex groups (``WaveformSequence`` items), e.g. a 10 s
``RHYTHM`` and a 1.2 s ``MEDIAN BEAT``; the reader takes the group lasting 10 s (up to the
padding tolerance), preferring one labelled RHYTHM. ``ds.waveform_array(i)`` applies
``ChannelSensitivity`` x ``ChannelSensitivityCorrectionFactor`` and ``ChannelBaseline``,
so values are in each channel's ``ChannelSensitivityUnitsSequence`` unit (UCUM ``uV`` or
``mV``). Channel labels are the ``ChannelSourceSequence`` code meanings ("Lead I
(Einthoven)"); where a meaning is not a lead name, the SCP-ECG / MDC code number is used
(both number the leads alike: 1 I, 2 II, 3-8 V1-V6, 61 III, 62 aVR, 63 aVL, 64 aVF).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.formats.common import PAD_TOLERANCE_S, Channels, unit_to_mv
from pipeline.data.leads import canonical_lead
from pipeline.data.wfdb_record import RecordError

#: lead number of the SCP-ECG (``5.6.3-9-<n>``) and MDC (``2:<n>``) lead codes
_CODE_NUMBER = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
}  # fmt: skip
_TRAILING_NUMBER = re.compile(r"[-:](\d+)$")


def _label(channel: Any) -> str:
    """The lead a channel definition names (code meaning, else code number)."""
    source = channel.ChannelSourceSequence[0] if "ChannelSourceSequence" in channel else None
    if source is None:
        return str(channel.get("ChannelLabel", ""))
    meaning = str(source.get("CodeMeaning", ""))
    if canonical_lead(meaning) is None:
        m = _TRAILING_NUMBER.search(str(source.get("CodeValue", "")))
        scheme = str(source.get("CodingSchemeDesignator", "")).upper()
        if m and scheme in ("SCPECG", "MDC") and int(m.group(1)) in _CODE_NUMBER:
            return _CODE_NUMBER[int(m.group(1))]
    return meaning


def _pick_group(waves: Any) -> int:
    """Index of the 10 s multiplex group (RHYTHM first); RecordError ``length`` if none."""
    found, fits = [], []
    for i, w in enumerate(waves):
        label = str(w.get("MultiplexGroupLabel", "") or f"group {i}")
        seconds = float(w.NumberOfWaveformSamples) / float(w.SamplingFrequency)
        found.append(f"{label} {seconds:g} s")
        if 10.0 <= seconds <= 10.0 + PAD_TOLERANCE_S:
            fits.append((0 if "RHYTHM" in label.upper() else 1, i))
    if not fits:
        raise RecordError(
            f"length: no 10 s waveform among {len(found)} multiplex group(s) "
            f"({', '.join(found)}); a median beat or short strip is not a rhythm strip"
        )
    return min(fits)[1]


def read_dicom(path: str | Path) -> Channels:
    """The 10 s waveform of a DICOM ECG object, in mV.

    Raises:
        RecordError: ``read_error`` (not DICOM, no waveform), ``length``, ``units``.
    """
    import pydicom  # imported here: only DICOM inputs need it
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path))
    except (InvalidDicomError, OSError, ValueError) as err:
        raise RecordError(f"read_error: not a readable DICOM file ({err})") from None
    if "WaveformSequence" not in ds or not len(ds.WaveformSequence):
        sop = getattr(ds.get("SOPClassUID"), "name", "unknown SOP class")
        raise RecordError(f"read_error: DICOM object without a WaveformSequence ({sop})")
    i = _pick_group(ds.WaveformSequence)
    wave = ds.WaveformSequence[i]
    scale = []
    for k, ch in enumerate(wave.ChannelDefinitionSequence):
        if "ChannelSensitivity" not in ch or "ChannelSensitivityUnitsSequence" not in ch:
            raise RecordError(f"units: channel {k + 1} has no ChannelSensitivity and unit")
        unit = str(ch.ChannelSensitivityUnitsSequence[0].CodeValue)
        scale.append(unit_to_mv(unit, f"channel {k + 1}"))
    try:
        values = ds.waveform_array(i)  # (T, C), sensitivity and baseline applied
    except Exception as err:
        raise RecordError(f"read_error: waveform data: {type(err).__name__}: {err}") from None
    x = (np.asarray(values, np.float64) * np.asarray(scale)).T.astype(np.float32)  # (C, T)
    names = [_label(ch) for ch in wave.ChannelDefinitionSequence]
    return Channels(names, x, float(wave.SamplingFrequency))
