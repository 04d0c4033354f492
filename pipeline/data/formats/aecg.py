"""HL7 aECG (FDA annotated ECG, HL7 v3 namespace ``urn:hl7-org:v3``) rhythm series.

Layout (HL7 aECG implementation guide): ``AnnotatedECG/component/series`` with a ``code``
(``RHYTHM``; representative beats live in ``derivedSeries``, which is never read), then
``component/sequenceSet`` whose ``component/sequence`` elements are one time sequence
(``code`` ``TIME_ABSOLUTE`` or ``TIME_RELATIVE``; ``value`` GLIST_TS / GLIST_PQ with an
``increment``: the sampling interval) and one sequence per lead (``code``
``MDC_ECG_LEAD_<name>``; ``value`` SLIST_PQ: sample = ``origin`` + ``scale`` x digit, with
``digits`` a space-separated integer list and the unit on origin and scale).
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

import numpy as np
from defusedxml import ElementTree

from pipeline.data.formats.common import PAD_TOLERANCE_S, Channels, unit_to_mv
from pipeline.data.wfdb_record import RecordError

_H = "{urn:hl7-org:v3}"
_TIME_TO_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _code(el: Element) -> str:
    c = el.find(f"{_H}code")  # (an Element without children is falsy: test for None)
    return "" if c is None else c.get("code", "")


def _quantity(el: Element | None, where: str) -> tuple[float, str]:
    if el is None or el.get("value") is None:
        raise RecordError(f"bad_header: {where} missing")
    try:
        return float(el.get("value", "")), el.get("unit", "")
    except ValueError as err:
        raise RecordError(f"bad_header: {where}: {err}") from None


def _series_channels(series: Element) -> Channels:
    """One series' leads in mV and its rate."""
    fs, names = 0.0, []
    rows: list[np.ndarray] = []
    for seq in series.iterfind(f"{_H}component/{_H}sequenceSet/{_H}component/{_H}sequence"):
        code = _code(seq)
        value = seq.find(f"{_H}value")
        if value is None:
            continue
        if code.startswith("TIME_"):
            step, unit = _quantity(value.find(f"{_H}increment"), f"{code} increment")
            if unit not in _TIME_TO_S or step <= 0:
                raise RecordError(f"bad_header: {code} increment {step:g} {unit!r}")
            fs = 1.0 / (step * _TIME_TO_S[unit])
            continue
        origin, o_unit = _quantity(value.find(f"{_H}origin"), f"{code} origin")
        scale, s_unit = _quantity(value.find(f"{_H}scale"), f"{code} scale")
        try:
            digits = np.array((value.findtext(f"{_H}digits") or "").split(), np.float64)
        except ValueError as err:
            raise RecordError(f"bad_header: {code} digits: {err}") from None
        zero = origin * unit_to_mv(o_unit or s_unit, code)
        mv = zero + scale * unit_to_mv(s_unit, code) * digits  # (T,)
        if rows and len(mv) != len(rows[0]):
            raise RecordError(
                f"truncated_signal: {code} holds {len(mv)} samples, not {len(rows[0])}"
            )
        names.append(code)
        rows.append(mv.astype(np.float32))
    if not fs:
        raise RecordError("bad_header: series without a TIME sequence increment (sampling rate)")
    if not rows:
        raise RecordError("not_12_lead: the series holds no lead sequence")
    return Channels(names, np.stack(rows), fs)


def read_aecg(path: str | Path) -> Channels:
    """The 10 s rhythm series of an HL7 aECG file, in mV.

    Raises:
        RecordError: ``read_error`` (not XML / not AnnotatedECG), ``rhythm_missing``,
            ``length`` (no 10 s series), ``bad_header``, ``units``.
    """
    try:
        root = ElementTree.parse(str(path)).getroot()
    except Exception as err:  # ParseError and defusedxml's refusals alike
        raise RecordError(f"read_error: not valid XML ({type(err).__name__}: {err})") from None
    if root.tag != f"{_H}AnnotatedECG":
        raise RecordError(f"read_error: XML root {root.tag!r}, expected {_H}AnnotatedECG")
    series = root.findall(f"{_H}component/{_H}series")
    codes = [_code(s) or "?" for s in series]
    rhythm = [s for s, c in zip(series, codes, strict=True) if c.upper() == "RHYTHM"]
    if not rhythm:
        raise RecordError(
            f"rhythm_missing: no series with code RHYTHM (found: {', '.join(codes) or 'none'})"
        )
    found = []
    for s in rhythm:
        ch = _series_channels(s)
        seconds = ch.signal.shape[1] / ch.fs
        if 10.0 <= seconds <= 10.0 + PAD_TOLERANCE_S:
            return ch
        found.append(f"{seconds:g} s")
    raise RecordError(f"length: no 10 s RHYTHM series (found {', '.join(found)})")
