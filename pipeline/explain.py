"""ECG-only inference: diagnoses plus the lab abnormalities that explain them.

The three-stage model needs nothing but the 10 s 12-lead ECG at inference. This module
reads WFDB records exactly as the shard stage does (lead order checked by name, NaNs
interpolated, amplitudes clipped, 500 -> 100 Hz polyphase resampling, float16 storage), cuts
each into the evaluation crops, and runs the ``method_labs`` model, whose file holds the
stage-2 diagnosis head and the stage-3 lab head on one shared encoder.

Command line::

    python -m pipeline.explain --model results/models/method_labs \\
        --labels results/extract/label_manifest.tsv RECORD [RECORD ...]

where RECORD is a WFDB record path without extension (``.../s40689238/40689238``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.data.ecg_store import RecordError, read_record, resample, signal_problem
from pipeline.schema import FS_HZ, N_SAMPLES
from pipeline.train.data import crop_starts
from pipeline.train.model import SupervisedModel, load_supervised


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

    def summary(self, top: int = 5) -> str:
        """Readable lines: the top diagnoses and lab abnormalities with probabilities."""
        if self.error is not None:
            return f"{self.record}: not readable ({self.error})"
        lines = [f"{self.record}:"]
        for title, items in (
            ("diagnoses", self.diagnoses),
            ("predicted lab abnormalities", self.lab_abnormalities),
        ):
            lines.append(f"  {title}:")
            lines.extend(
                f"    {f.probability:5.2f}  {f.label}  {f.name}".rstrip() for f in items[:top]
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class Preprocessing:
    """Must match the ``shard`` and ``train`` settings the model was trained with."""

    fs_out: int = 100
    clip_mv: float = 3.0
    crop_samples: int = 250
    eval_crops: int = 4


def _crops(base: Path, prep: Preprocessing) -> np.ndarray:
    """(eval_crops, 12, crop) float32 of one record, as the training pipeline saw it."""
    signal = read_record(base, FS_HZ, N_SAMPLES).signal  # (12, 5000) mV
    reason = signal_problem(signal)  # interpolates NaNs in place
    if reason is not None:
        raise RecordError(reason)
    np.clip(signal, -prep.clip_mv, prep.clip_mv, out=signal)
    # float16 round trip: the shards store float16, so inference sees the same values
    x = resample(signal, FS_HZ, prep.fs_out).astype(np.float16).astype(np.float32)  # (12, L)
    starts = crop_starts(x.shape[-1], prep.crop_samples, prep.eval_crops)
    return np.stack([x[:, s : s + prep.crop_samples] for s in starts])


@torch.no_grad()
def _probabilities(model: SupervisedModel, crops: np.ndarray, head: str) -> np.ndarray:
    logits = model({"ecg": torch.from_numpy(crops)}, head=head)  # (crops, K)
    return torch.sigmoid(logits).mean(dim=0).numpy()  # (K,) averaged over crops


def _findings(labels: Sequence[str], prob: np.ndarray, names: Mapping[str, str]) -> list[Finding]:
    order = np.argsort(-prob, kind="stable")
    return [Finding(labels[j], names.get(labels[j], ""), float(prob[j])) for j in order]


def read_label_names(manifest: Path) -> dict[str, str]:
    """Code -> description from a label manifest TSV (columns code, description)."""
    with open(manifest, newline="") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        if rows.fieldnames is None or not {"code", "description"} <= set(rows.fieldnames):
            raise ValueError(f"{manifest}: needs columns 'code' and 'description'")
        return {row["code"]: row["description"] for row in rows}


def explain_records(
    model_dir: Path,
    records: Sequence[Path],
    prep: Preprocessing = Preprocessing(),
    label_names: Mapping[str, str] | None = None,
) -> list[Explanation]:
    """Diagnoses and lab abnormalities for WFDB records, from the ECG alone.

    Args:
        model_dir: A ``method_labs`` model directory (``results/models/method_labs``).
        records: WFDB record paths without extension.
        prep: Preprocessing; must match the settings used to build the training shards.
        label_names: Optional code -> description for the diagnoses (label manifest).

    Returns:
        One :class:`Explanation` per record, in input order. Unreadable records (the shard
        stage's quarantine reasons) get ``error`` set instead of raising, so a batch never
        loses the readable ones.

    Raises:
        ValueError: If ``model_dir`` is not a model with both heads (ECG-only method_labs).
    """
    model, tabular = load_supervised(Path(model_dir))
    if model.diagnosis_head is None or tabular is not None:
        raise ValueError(
            f"{model_dir}: explanations need the ECG-only method_labs model "
            "(diagnosis head + lab head on one encoder)"
        )
    model.eval()
    dx_labels = list(model.diagnosis_head_cfg["labels"])
    lab_labels = list(model.head_cfg["labels"])
    names = dict(label_names or {})
    out = []
    for base in records:
        try:
            crops = _crops(Path(base), prep)
        except RecordError as err:
            out.append(Explanation(str(base), error=str(err)))
            continue
        dx = _probabilities(model, crops, "diagnosis_head")
        labs = _probabilities(model, crops, "head")
        out.append(
            Explanation(str(base), _findings(dx_labels, dx, names), _findings(lab_labels, labs, {}))
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print explanations (and optionally write them as JSON)."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.explain", description=__doc__)
    parser.add_argument("records", nargs="+", type=Path, help="WFDB record paths, no extension")
    parser.add_argument("--model", type=Path, required=True, help="method_labs model directory")
    parser.add_argument("--labels", type=Path, help="label_manifest.tsv for diagnosis names")
    parser.add_argument("--top", type=int, default=5, help="findings printed per head")
    parser.add_argument("--json", type=Path, help="write every probability to this JSON file")
    defaults = Preprocessing()
    for name in ("fs_out", "clip_mv", "crop_samples", "eval_crops"):
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    prep = Preprocessing(args.fs_out, args.clip_mv, args.crop_samples, args.eval_crops)
    names = read_label_names(args.labels) if args.labels else None
    explanations = explain_records(args.model, args.records, prep, names)
    print("\n".join(e.summary(args.top) for e in explanations))
    if args.json:
        args.json.write_text(json.dumps([asdict(e) for e in explanations], indent=1) + "\n")
    return 1 if any(e.error for e in explanations) else 0


if __name__ == "__main__":
    sys.exit(main())
