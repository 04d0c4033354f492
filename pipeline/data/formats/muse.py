"""GE MUSE XML (``RestingECG``) exports: the 10 s rhythm strip, never the median beat.

Layout (GE's MUSE XML export, as documented by GE Healthcare and seen in every export):
``RestingECG/Waveform`` elements, one per ``WaveformType`` (``Median``: one averaged beat;
``Rhythm``: the 10 s strip), each with ``SampleBase`` and ``SampleExponent`` (rate =
base x 10^exponent Hz) and one ``LeadData`` per lead holding ``LeadID``,
``LeadSampleCountTotal``, ``LeadAmplitudeUnitsPerBit``, ``LeadAmplitudeUnits``
(``MICROVOLTS``) and ``WaveFormData``: base64 of little-endian int16 samples. MUSE
usually stores the 8 independent leads (I, II, V1-V6); the reader hands them over and
:func:`pipeline.data.formats.common.to_record` derives the other four.

Parsed with defusedxml (the stdlib parser with entity expansion and external references
refused), since export files come from outside.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from xml.etree.ElementTree import Element

import numpy as np
from defusedxml import ElementTree

from pipeline.data.formats.common import Channels, unit_to_mv
from pipeline.data.wfdb_record import RecordError


def _text(el: Element, tag: str, where: str) -> str:
    value = el.findtext(tag)
    if value is None or not value.strip():
        raise RecordError(f"bad_header: {where} has no {tag}")
    return value.strip()


def _lead(lead: Element, n_expected: int | None) -> tuple[str, np.ndarray]:
    """(LeadID, (T,) mV) of one ``LeadData`` element."""
    name = _text(lead, "LeadID", "LeadData")
    where = f"lead {name}"
    try:
        raw = base64.b64decode(_text(lead, "WaveFormData", where))
        per_bit = float(_text(lead, "LeadAmplitudeUnitsPerBit", where))
        count = int(_text(lead, "LeadSampleCountTotal", where))
    except (binascii.Error, ValueError) as err:
        raise RecordError(f"bad_header: {where}: {err}") from None
    unit = lead.findtext("LeadAmplitudeUnits") or ""
    d = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2")  # (T,) int16
    if len(d) != count or (n_expected is not None and count != n_expected):
        raise RecordError(
            f"truncated_signal: {where} holds {len(d)} samples, LeadSampleCountTotal {count}"
        )
    return name, d.astype(np.float32) * np.float32(per_bit * unit_to_mv(unit, where))


def read_muse(path: str | Path) -> Channels:
    """The ``Rhythm`` waveform of a MUSE XML file, in mV.

    Raises:
        RecordError: ``read_error`` (not XML / not RestingECG), ``rhythm_missing`` (only a
            median beat), ``bad_header``, ``units``, ``truncated_signal``.
    """
    try:
        root = ElementTree.parse(str(path)).getroot()
    except Exception as err:  # ParseError and defusedxml's refusals alike
        raise RecordError(f"read_error: not valid XML ({type(err).__name__}: {err})") from None
    if root.tag != "RestingECG":
        raise RecordError(f"read_error: XML root {root.tag!r}, expected RestingECG (GE MUSE)")
    waves = root.findall("Waveform")
    types = [(w.findtext("WaveformType") or "?").strip() for w in waves]
    rhythm = [w for w, t in zip(waves, types, strict=True) if t.lower() == "rhythm"]
    if not rhythm:
        raise RecordError(
            "rhythm_missing: no Waveform of WaveformType Rhythm "
            f"(found: {', '.join(types) or 'none'}); "
            "a median beat is not a 10 s rhythm strip"
        )
    wave = rhythm[0]
    try:
        fs = float(_text(wave, "SampleBase", "Rhythm waveform")) * 10.0 ** int(
            wave.findtext("SampleExponent") or 0
        )
    except ValueError as err:
        raise RecordError(f"bad_header: Rhythm waveform sample rate: {err}") from None
    names: list[str] = []
    rows: list[np.ndarray] = []
    for lead in wave.findall("LeadData"):
        name, x = _lead(lead, len(rows[0]) if rows else None)
        names.append(name)
        rows.append(x)
    if not rows:
        raise RecordError("not_12_lead: the Rhythm waveform holds no LeadData")
    return Channels(names, np.stack(rows), fs)
