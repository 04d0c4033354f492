"""A self-contained model directory: weights, model.json, manifests, ONNX file, model card.

``export_model_dir`` copies the trained ``method_labs`` files, writes the label and lab
manifests of the model's outputs, exports :class:`~pipeline.infer.network.ExplainNet`
with stored S4 kernels to ``model.onnx`` (opset 17, dynamic batch; input ``ecg``
(B, 12, n_samples) float32 after the recorded preprocessing; outputs ``diagnoses``,
``labs`` (crop-averaged probabilities) and ``embedding``), checks onnxruntime against the
torch model on given records and writes ``export.json`` (the error), ``MODEL_CARD.md`` and,
last, ``SHA256SUMS`` over every file (:mod:`pipeline.infer.verify`: ``load_bundle`` checks
it). Files get the mode the umask allows (the weights are copied, not their 0600 mode).
The ONNX graph is traced from the torch kernel path; the pykeops backend (a GPU kernel
evaluator) is not traceable and not needed, since the kernel is precomputed.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from pipeline.infer.bundle import (
    LAB_FILE,
    LABEL_FILE,
    META_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    load_bundle,
    make_scorer,
)
from pipeline.infer.card import CardInputs, model_card
from pipeline.infer.network import OUTPUTS, ExplainNet, frozen_copy
from pipeline.infer.verify import EXPORT_MARKER, write_checksums
from pipeline.io import atomic_path, write_text_atomic
from pipeline.manifests import read_manifest_tsv
from pipeline.models.supervised import load_supervised

OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    """What the export checked: max |onnx - torch| per output over ``n_records``."""

    n_records: int
    max_abs_error: dict[str, float]

    @property
    def worst(self) -> float:
        return max(self.max_abs_error.values(), default=0.0)


def export_onnx(model_dir: Path, path: Path) -> None:
    """Trace the model with stored kernels (eval mode) to ONNX at ``path`` (atomically)."""
    bundle = load_bundle(model_dir)
    p = bundle.prep
    model, _ = load_supervised(Path(model_dir))
    fixed = frozen_copy(model.eval(), int(p.crop_samples or 0))
    net = ExplainNet(fixed, p.n_samples, int(p.crop_samples or 0), int(p.eval_crops or 0))
    example = torch.zeros(2, len(p.leads), p.n_samples)
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        # the TorchScript-based exporter needs no extra package (the dynamo one needs
        # onnxscript); torch flags it as legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks: constants
        torch.onnx.export(
            net.eval(),
            (example,),
            str(tmp),
            dynamo=False,
            input_names=["ecg"],
            output_names=list(OUTPUTS),
            dynamic_axes={name: {0: "batch"} for name in ("ecg", *OUTPUTS)},
            opset_version=OPSET,
        )


def check_onnx(model_dir: Path, x: np.ndarray) -> ExportReport:
    """Max absolute difference between the ONNX and torch outputs on records ``x``."""
    bundle = load_bundle(model_dir)
    ref = make_scorer(bundle, "torch")(x)
    got = make_scorer(bundle, "onnx")(x)
    err = {k: float(np.abs(got[k] - ref[k]).max(initial=0.0)) for k in OUTPUTS}
    return ExportReport(len(x), err)


def _manifest_rows(manifest: Path, column: str, wanted: list[str]) -> pl.DataFrame:
    """Rows of ``manifest`` for the model's outputs, in output order."""
    table = read_manifest_tsv(manifest, [column])
    missing = sorted(set(wanted) - set(table[column]))
    if missing:
        raise ValueError(f"{manifest}: no row for model output(s) {missing[:5]}")
    order = pl.DataFrame({column: wanted, "_pos": range(len(wanted))})
    return table.join(order, on=column).sort("_pos").drop("_pos")


def export_model_dir(
    model_dir: Path,
    out_dir: Path,
    label_manifest: Path,
    lab_manifest: Path,
    check_x: np.ndarray,
    card: CardInputs,
    tolerance: float = 1e-5,
) -> ExportReport:
    """Write the self-contained directory ``out_dir`` (atomically).

    Args:
        model_dir: the trained method_labs directory.
        out_dir: where the export goes (e.g. ``results/export/method_labs``).
        label_manifest: diagnosis label manifest (code, description, count).
        lab_manifest: lab targets of the model (column ``target``).
        check_x: preprocessed records (n, 12, n_samples) to compare ONNX against torch.
        card: what the model card reports besides model.json.
        tolerance: the largest accepted |onnx - torch|.

    Raises:
        RuntimeError: the ONNX outputs differ from torch by more than ``tolerance``.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    bundle = load_bundle(model_dir, label_manifest)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name in (WEIGHTS_FILE, META_FILE):  # new files: the umask's mode, not the source's
            shutil.copyfile(model_dir / name, tmp / name)
        labels = _manifest_rows(label_manifest, "code", bundle.diagnoses)
        labels.write_csv(tmp / LABEL_FILE, separator="\t")
        labs = _manifest_rows(lab_manifest, "target", bundle.labs)
        labs.write_csv(tmp / LAB_FILE, separator="\t")
        export_onnx(tmp, tmp / ONNX_FILE)
        report = check_onnx(tmp, check_x)
        if report.worst > tolerance:
            raise RuntimeError(
                f"{out_dir}: ONNX differs from torch by {report.worst:.2e} > {tolerance:g}"
            )
        text = model_card(load_bundle(tmp), labels, labs, card, report.worst)
        write_text_atomic(tmp / "MODEL_CARD.md", text)
        meta = json.dumps(_export_meta(report), indent=1) + "\n"
        write_text_atomic(tmp / EXPORT_MARKER, meta)  # from here on SHA256SUMS is required
        write_checksums(tmp)
    return report


def _export_meta(report: ExportReport) -> dict[str, Any]:
    import onnxruntime

    io: Mapping[str, str] = {
        "ecg": "(batch, 12, n_samples) float32 mV after model.json preprocessing",
        "diagnoses": "(batch, K) crop-averaged probabilities, labels.tsv order",
        "labs": "(batch, K_lab) crop-averaged probabilities, lab_targets.tsv order",
        "embedding": "(batch, d_model) crop-averaged encoder output",
    }
    return {
        "onnx_file": ONNX_FILE,
        "opset": OPSET,
        "io": dict(io),
        "checked_records": report.n_records,
        "max_abs_error_vs_torch": report.max_abs_error,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
