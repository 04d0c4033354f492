"""Table 1 of the paper: one row per approach, with requirements and macro AUROCs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.io import atomic_path, write_text_atomic
from pipeline.registry import ModelSpec, Reference, Table1Row, model_names, models


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


def approaches() -> list[Approach]:
    """Table 1's rows from the model registry: one per Table1Row, in its order, with the
    diagnoses and labs cells of the models that name it."""
    rows: dict[Table1Row, dict[str, ModelSpec]] = {}
    for spec in models().values():
        if spec.row is not None:
            rows.setdefault(spec.row, {})[spec.task] = spec
    out = []
    for row, cells in sorted(rows.items(), key=lambda item: item[0].order):
        diag, labs = cells.get("diagnoses"), cells.get("labs")
        out.append(
            Approach(
                title=row.title,
                inference=row.inference,
                training=row.training,
                diagnoses_model=None if diag is None else diag.name,
                labs_model=None if labs is None else labs.name,
                reference_diagnoses=None if diag is None else diag.reference,
                reference_labs=None if labs is None else labs.reference,
            )
        )
    return out


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
    missing = [m for m in model_names() if m not in evaluations]
    if missing:
        raise ValueError(f"Table 1 needs the evaluations of {missing}")
    rows = []
    for a in approaches():
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
