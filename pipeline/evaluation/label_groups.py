"""Diagnosis labels grouped by what the ECG can show of them (pipeline/resources/label_groups.tsv).

Three groups: ``waveform`` (rhythm, conduction, ST/ischaemia: read off the waveform),
``lab`` (defined by a laboratory value, which stage 1's tabular data carry) and ``none``
(neither). A label takes the group of its longest matching ICD-10 prefix; a label no row
matches is ``unlisted``, reported as such rather than guessed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

GROUPS = ("waveform", "lab", "none")
UNLISTED = "unlisted"
RESOURCE = "resources/label_groups.tsv"


@dataclass(frozen=True)
class GroupRule:
    """One row of label_groups.tsv: codes starting with ``prefix`` are in ``group``."""

    prefix: str
    group: str
    why: str


def parse_group_rules(lines: Iterable[str], source: str = RESOURCE) -> list[GroupRule]:
    """The rows of a label-groups TSV (``#`` lines are comments), validated."""
    rows = csv.DictReader((ln for ln in lines if not ln.startswith("#")), delimiter="\t")
    if rows.fieldnames != ["prefix", "group", "why"]:
        raise ValueError(f"{source}: columns must be prefix, group, why; got {rows.fieldnames}")
    out: list[GroupRule] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        rule = GroupRule(row["prefix"].strip(), row["group"].strip(), (row["why"] or "").strip())
        if not rule.prefix.isalnum() or rule.group not in GROUPS or not rule.why:
            raise ValueError(
                f"{source}: row {line} ({rule.prefix!r}): needs an ICD-10 prefix without the "
                f"dot, a group of {GROUPS} and a reason"
            )
        if rule.prefix in seen:
            raise ValueError(f"{source}: prefix {rule.prefix} is listed twice")
        seen.add(rule.prefix)
        out.append(rule)
    return out


def load_group_rules() -> list[GroupRule]:
    """The packaged label_groups.tsv."""
    text = resources.files("pipeline").joinpath(RESOURCE).read_text()
    return parse_group_rules(text.splitlines())


def group_of(code: str, rules: Sequence[GroupRule]) -> str:
    """The group of diagnosis code ``code`` (e.g. ``E875``): its longest matching prefix's."""
    matches = [r for r in rules if code.replace(".", "").upper().startswith(r.prefix.upper())]
    return max(matches, key=lambda r: len(r.prefix)).group if matches else UNLISTED
