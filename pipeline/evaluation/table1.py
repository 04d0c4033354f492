"""Table 1 of the paper: one row per approach, with requirements and macro AUROCs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.io import atomic_path, write_text_atomic

# Reference values: macro AUROC (95% CI where published) on real MIMIC data, PROTOCOL.md.
Reference = tuple[float, float | None, float | None]

# The five supervised models the report needs (keys of SUPERVISED in common.smk).
MODELS = (
    "method_diagnoses",
    "method_labs",
    "signal_only",
    "multimodal_classification",
    "multimodal_labs",
)


@dataclass(frozen=True)
class Approach:
    """One row of Table 1: which models fill it and the paper's reference values."""

    title: str
    inference: str
    training: str
    diagnoses_model: str | None
    labs_model: str | None
    reference_diagnoses: Reference | None
    reference_labs: Reference | None


APPROACHES = (
    Approach(
        title="Supervised signal-only (S4)",
        inference="ECG",
        training="ECG, diagnoses",
        diagnoses_model="signal_only",
        labs_model=None,
        reference_diagnoses=(0.768, 0.764, 0.772),
        reference_labs=None,
    ),
    Approach(
        title="Multimodal lab prediction (ECG + routine)",
        inference="ECG + routine clinical data",
        training="ECG, routine clinical data, lab values",
        diagnoses_model=None,
        labs_model="multimodal_labs",
        reference_diagnoses=None,
        reference_labs=(0.762, None, None),
    ),
    Approach(
        title="Multimodal classification (ECG + routine + labs)",
        inference="ECG + routine clinical data + lab values",
        training="ECG, routine clinical data, lab values, diagnoses",
        diagnoses_model="multimodal_classification",
        labs_model=None,
        reference_diagnoses=(0.826, 0.822, 0.829),
        reference_labs=None,
    ),
    Approach(
        title="Three-stage method (ECG only at inference)",
        inference="ECG",
        training="ECG, routine clinical data, lab values (pre-training), diagnoses, lab values",
        diagnoses_model="method_diagnoses",
        labs_model="method_labs",
        reference_diagnoses=(0.795, None, None),
        reference_labs=(0.701, None, None),
    ),
)


def _cell(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    m = summary["macro_auroc"]
    return {
        "model": summary["model"],
        "auroc": m["point"],
        "ci_low": m["ci_low"],
        "ci_high": m["ci_high"],
        "n_labels_evaluated": summary["n_labels_evaluated"],
        "n_labels_skipped": summary["n_labels_skipped"],
        "n_records": summary["n_records"],
    }


def _reference(ref: Reference | None) -> dict[str, float | None] | None:
    return None if ref is None else dict(zip(("auroc", "ci_low", "ci_high"), ref, strict=True))


def table1_rows(evaluations: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of Table 1 from the per-model evaluation summaries (keyed by model name)."""
    missing = [m for m in MODELS if m not in evaluations]
    if missing:
        raise ValueError(f"Table 1 needs the evaluations of {missing}")
    rows = []
    for a in APPROACHES:
        rows.append(
            {
                "approach": a.title,
                "inference_requires": a.inference,
                "training_requires": a.training,
                "diagnoses": _cell(evaluations.get(a.diagnoses_model or "")),
                "labs": _cell(evaluations.get(a.labs_model or "")),
                "reference": {
                    "diagnoses": _reference(a.reference_diagnoses),
                    "labs": _reference(a.reference_labs),
                },
            }
        )
    return rows


def fmt_ci(point: float | None, low: float | None, high: float | None) -> str:
    """``0.812 (0.790-0.833)``; ``-`` when missing."""
    if point is None:
        return "-"
    if low is None or high is None:
        return f"{point:.3f}"
    return f"{point:.3f} ({low:.3f}-{high:.3f})"


def _cell_text(cell: Mapping[str, Any] | None) -> str:
    return "-" if cell is None else fmt_ci(cell["auroc"], cell["ci_low"], cell["ci_high"])


def _ref_text(ref: Mapping[str, Any] | None) -> str:
    if ref is None:
        return "-"
    if ref["ci_low"] is None:
        return f"{ref['auroc']:.3f}"
    return f"{ref['auroc']:.3f} ({ref['ci_low']:.3f}-{ref['ci_high']:.3f})"


def _counts_text(row: Mapping[str, Any]) -> str:
    parts = [
        f"{task}: {row[task]['n_labels_evaluated']} / {row[task]['n_labels_skipped']}"
        for task in ("diagnoses", "labs")
        if row[task] is not None
    ]
    return "; ".join(parts)


def table1_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Table 1 as a GitHub-flavoured markdown table."""
    head = (
        "| Approach | Inference requires | Training requires "
        "| Diagnoses macro AUROC (95% CI) | Labs macro AUROC (95% CI) "
        "| Labels evaluated / skipped | Paper: diagnoses | Paper: labs |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        cells = [
            r["approach"],
            r["inference_requires"],
            r["training_requires"],
            _cell_text(r["diagnoses"]),
            _cell_text(r["labs"]),
            _counts_text(r),
            _ref_text(r["reference"]["diagnoses"]),
            _ref_text(r["reference"]["labs"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flat_row(r: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "approach": r["approach"],
        "inference_requires": r["inference_requires"],
        "training_requires": r["training_requires"],
    }
    for task in ("diagnoses", "labs"):
        cell = r[task] or {}
        out[f"{task}_model"] = cell.get("model")
        for key in ("auroc", "ci_low", "ci_high"):
            out[f"{task}_{key}"] = cell.get(key)
        out[f"{task}_labels_evaluated"] = cell.get("n_labels_evaluated")
        out[f"{task}_labels_skipped"] = cell.get("n_labels_skipped")
        ref = r["reference"][task] or {}
        for key in ("auroc", "ci_low", "ci_high"):
            out[f"paper_{task}_{key}"] = ref.get(key)
    return out


def write_table1(
    rows: Sequence[Mapping[str, Any]],
    md: Path,
    csv: Path,
    json_path: Path,
    comparisons: Mapping[str, Any] | None = None,
) -> str:
    """Write Table 1 as markdown, CSV and JSON; returns the markdown.

    The JSON also carries the paired comparisons (differences and the share of the gap
    bridged, with their bootstrap intervals) so scripts need not parse report.md.
    """
    text = table1_markdown(rows)
    write_text_atomic(md, "# Table 1: macro AUROC on the test fold\n\n" + text)
    schema = {
        f"{t}_{k}": pl.Float64
        for t in ("diagnoses", "labs")
        for k in ("auroc", "ci_low", "ci_high")
    } | {
        f"{t}_labels_{k}": pl.Int64 for t in ("diagnoses", "labs") for k in ("evaluated", "skipped")
    }
    frame = pl.DataFrame([_flat_row(r) for r in rows], schema_overrides=schema)
    with atomic_path(csv, suffix=".csv") as tmp:
        frame.write_csv(tmp)
    payload = {"rows": list(rows), "comparisons": dict(comparisons or {})}
    write_text_atomic(json_path, json.dumps(payload, indent=1, allow_nan=False) + "\n")
    return text
