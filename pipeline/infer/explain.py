"""Readable explanations: the top diagnoses with the predicted lab abnormalities beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.data.formats import ArraySpec
from pipeline.infer.bundle import Bundle, Scorer, load_bundle, make_scorer
from pipeline.infer.records import RecordRef, expand_inputs, load_batch


@dataclass(frozen=True)
class Finding:
    """One output of a head: label code or lab target, its name, and the probability."""

    label: str
    name: str
    probability: float


@dataclass(frozen=True)
class Explanation:
    """What the model says about one ECG, most likely findings first."""

    record: str
    diagnoses: list[Finding] = field(default_factory=list)
    lab_abnormalities: list[Finding] = field(default_factory=list)
    error: str | None = None  # the reason a record could not be read (nothing else is set)
    warnings: list[str] = field(default_factory=list)  # pipeline.data.plausibility
    derived_leads: list[str] = field(default_factory=list)  # computed from I and II

    def summary(self, top: int = 5) -> str:
        """Readable lines: the top diagnoses and lab abnormalities with probabilities."""
        if self.error is not None:
            return f"{self.record}: not readable ({self.error})"
        lines = [f"{self.record}:"]
        if self.derived_leads:
            lines.append(f"  derived leads (from I and II): {', '.join(self.derived_leads)}")
        lines.extend(f"  plausibility warning: {w}" for w in self.warnings)
        for title, items in (
            ("diagnoses", self.diagnoses),
            ("predicted lab abnormalities", self.lab_abnormalities),
        ):
            lines.append(f"  {title}:")
            lines.extend(
                f"    {f.probability:5.2f}  {f.label}  {f.name}".rstrip() for f in items[:top]
            )
        return "\n".join(lines)


def findings(labels: Sequence[str], prob: np.ndarray, names: Mapping[str, str]) -> list[Finding]:
    """Findings sorted by probability, highest first (ties keep label order)."""
    order = np.argsort(-prob, kind="stable")
    return [Finding(labels[j], names.get(labels[j], ""), float(prob[j])) for j in order]


def explain_refs(
    refs: Sequence[RecordRef], bundle: Bundle, scorer: Scorer, batch_size: int = 64
) -> list[Explanation]:
    """One :class:`Explanation` per record, in order; unreadable ones carry ``error``."""
    out: list[Explanation] = []
    for start in range(0, len(refs), batch_size):
        batch = refs[start : start + batch_size]
        loaded = load_batch(batch, bundle.prep)
        scores = scorer(loaded.x) if loaded.ok else {}
        row = {i: k for k, i in enumerate(loaded.ok)}
        for i, ref in enumerate(batch):
            if i in loaded.errors:
                out.append(Explanation(ref.key, error=loaded.errors[i]))
                continue
            dx = findings(bundle.diagnoses, scores["diagnoses"][row[i]], bundle.names)
            labs = findings(bundle.labs, scores["labs"][row[i]], {})
            warnings = loaded.warnings.get(i, [])
            derived = list(loaded.derived.get(i, ()))
            out.append(Explanation(ref.key, dx, labs, None, warnings, derived))
    return out


def explain_records(
    model_dir: Path,
    records: Sequence[str | Path],
    label_names: Mapping[str, str] | None = None,
    backend: str = "torch",
    spec: ArraySpec | None = None,
) -> list[Explanation]:
    """Diagnoses and lab abnormalities for ECG files, from the ECG alone.

    Args:
        model_dir: a ``method_labs`` model directory (training output or export).
        records: ECG files of any format :mod:`pipeline.data.formats` reads (WFDB record
            paths with or without extension) or directories of them.
        label_names: optional code -> description for the diagnoses.
        backend: "torch" or "onnx" (an exported directory).
        spec: rate, lead order and units of array files (HDF5, NumPy).

    Returns:
        One :class:`Explanation` per record, in input order. Unreadable records (the shard
        stage's quarantine reasons) get ``error`` set instead of raising.

    Raises:
        ValueError: ``model_dir`` is not an ECG-only model with both heads.
    """
    bundle = load_bundle(model_dir)
    if label_names:
        bundle.names.update(label_names)
    return explain_refs(expand_inputs(records, spec), bundle, make_scorer(bundle, backend))
