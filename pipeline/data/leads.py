"""Matching WFDB signal names to the 12 standard leads, whatever the export's spelling.

Exports differ only in spelling: MIMIC-IV-ECG writes ``aVR``, GE MUSE ``AVR``, other
datasets ``avr``, ``Lead II``, ``DII`` (Brazilian / European exports) or ``v1``. A name is
normalised by upper-casing it and dropping a ``LEAD`` prefix and separators (space, ``_``,
``-``, ``.``), then looked up in a small alias table. Channels that match no lead (rhythm
strips, pacing markers, ``V7``...) are reported as extras and ignored by the readers; a
second channel matching the same lead (a repeated rhythm lead II) is an extra too.

Reasons (``kind: detail``, machine-readable up to the colon) for records that cannot be
used: ``not_12_lead`` (fewer than 12 signals), ``missing_lead`` (12 or more signals, some
standard lead absent); both name the missing leads and list the expected names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.schema import LEADS

_SEPARATORS = re.compile(r"[\s_\-.]+")

#: normalised spelling -> canonical lead name of :data:`pipeline.schema.LEADS`
ALIASES: dict[str, str] = {
    **{lead.upper(): lead for lead in LEADS},
    "DI": "I",
    "DII": "II",
    "DIII": "III",
}


class LeadError(ValueError):
    """The record's channels do not include the 12 standard leads; ``str`` is the reason."""


@dataclass(frozen=True)
class LeadMatch:
    """Where each standard lead sits in the file, and the channels left over.

    Attributes:
        columns: file column of each lead of :data:`LEADS`, in that order.
        extra: names of the channels that are ignored, in file order.
    """

    columns: tuple[int, ...]
    extra: tuple[str, ...]


def canonical_lead(name: str) -> str | None:
    """The standard lead a signal name denotes (``"AVR"`` -> ``"aVR"``), or None."""
    key = _SEPARATORS.sub("", name.strip().upper())
    if key.startswith("LEAD") and len(key) > 4:
        key = key[4:]
    return ALIASES.get(key)


def match_leads(names: Sequence[str]) -> LeadMatch:
    """Columns of the 12 standard leads among a header's signal names.

    Args:
        names: the header's signal names in file order.

    Returns:
        The column of each lead (first match wins) and the ignored channels.

    Raises:
        LeadError: a standard lead is missing; the message names it and lists the
            expected names (``not_12_lead`` when the record has fewer than 12 signals).
    """
    found: dict[str, int] = {}
    extra: list[str] = []
    for col, name in enumerate(names):
        lead = canonical_lead(name)
        if lead is None or lead in found:
            extra.append(name)
        else:
            found[lead] = col
    missing = [lead for lead in LEADS if lead not in found]
    if missing:
        expected = ", ".join(LEADS)
        got = ", ".join(names) or "none"
        if len(names) < len(LEADS):
            raise LeadError(
                f"not_12_lead: {len(names)} signal(s) ({got}); only standard 12-lead ECGs "
                f"are supported (expected {expected}; missing {', '.join(missing)})"
            )
        raise LeadError(f"missing_lead: {', '.join(missing)} (expected {expected}; found {got})")
    return LeadMatch(tuple(found[lead] for lead in LEADS), tuple(extra))
