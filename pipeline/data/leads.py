"""Matching WFDB signal names to the 12 standard leads, whatever the export's spelling.

Exports differ only in spelling: MIMIC-IV-ECG writes ``aVR``, GE MUSE ``AVR``, other
datasets ``avr``, ``Lead II``, ``DII`` (Brazilian / European exports) or ``v1``. A name is
normalised by upper-casing it and dropping a ``LEAD`` prefix and separators (space, ``_``,
``-``, ``.``, ``,``) and a parenthesised qualifier (DICOM's coded meaning "Lead I
(Einthoven)") and the HL7 aECG code prefix ``MDC_ECG_LEAD_``, then looked up in a small
alias table. Channels that match no lead (rhythm
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

import numpy as np

from pipeline.mimic_schema import LEADS

_SEPARATORS = re.compile(r"[\s_\-.,]+")
_QUALIFIER = re.compile(r"\(.*?\)")  # "Lead I (Einthoven)": the qualifier names no lead
_PREFIXES = ("MDCECGLEAD", "LEAD")  # HL7 aECG / IEEE 11073 MDC codes, then plain "Lead"
#: the 8 leads a recorder measures independently; the other 4 follow from I and II
INDEPENDENT: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
#: limb leads derivable from I and II (Einthoven's law, Goldberger's augmented leads)
DERIVABLE: tuple[str, ...] = ("III", "aVR", "aVL", "aVF")

#: normalised spelling -> canonical lead name of :data:`pipeline.mimic_schema.LEADS`
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
    key = _SEPARATORS.sub("", _QUALIFIER.sub("", name).strip().upper())
    for prefix in _PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix) :]
            break
    return ALIASES.get(key)


def derive_limb_leads(leads: dict[str, np.ndarray]) -> tuple[str, ...]:
    """Add III, aVR, aVL and aVF computed from I and II where they are missing, in place.

    Einthoven: III = II - I; Goldberger: aVR = -(I + II) / 2, aVL = I - II / 2,
    aVF = II - I / 2 (all from the electrode potentials, so exact for any recording).

    Args:
        leads: canonical lead name -> (T,) signal in mV.

    Returns:
        The names of the leads added (empty when nothing was missing or I / II are absent).
    """
    if "I" not in leads or "II" not in leads:
        return ()
    one, two = leads["I"], leads["II"]
    formulas = {
        "III": lambda: two - one,
        "aVR": lambda: -(one + two) / 2,
        "aVL": lambda: one - two / 2,
        "aVF": lambda: two - one / 2,
    }
    added = tuple(lead for lead in DERIVABLE if lead not in leads)
    for lead in added:
        leads[lead] = formulas[lead]()
    return added


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
