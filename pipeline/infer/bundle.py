"""A model directory as inference sees it: labels, names, preprocessing, and a scorer.

Works on a training output (``results/models/method_labs``: model.safetensors + model.json)
and on an exported directory (``results/export/method_labs``: the same two files plus
``model.onnx``, ``labels.tsv``, ``lab_targets.tsv`` and the model card). Everything that
turns a record into model input comes from ``model.json["preprocessing"]``.

Scorers map a batch of preprocessed records (B, 12, n_samples) float32 to
``{"diagnoses": (B, K_dx), "labs": (B, K_lab), "embedding": (B, H)}``: ``torch`` runs the
trained modules, ``onnx`` runs ``model.onnx`` with onnxruntime (neither torch nor the
training code is imported on that path).

Nothing scores before :func:`load_bundle` has checked the directory
(:mod:`pipeline.infer.verify`): every file against ``SHA256SUMS``, the manifests against
``model.json`` and the preprocessing for consistency; the ONNX scorer also checks the
graph's input shape. Refusals are :class:`BundleError` (one line naming the file or key).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.preprocessing import Preprocessing
from pipeline.infer.verify import BundleError, check_manifest, check_preprocessing, verify_files
from pipeline.manifests import label_descriptions

Scorer = Callable[[np.ndarray], dict[str, np.ndarray]]
BACKENDS = ("torch", "onnx")
ONNX_FILE = "model.onnx"
LABEL_FILE = "labels.tsv"
LAB_FILE = "lab_targets.tsv"
META_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"

__all__ = ["BACKENDS", "Bundle", "BundleError", "Scorer", "load_bundle", "make_scorer"]


def read_label_names(manifest: Path) -> dict[str, str]:
    """Code -> description from a label manifest TSV (columns code, description)."""
    return label_descriptions(manifest)


@dataclass(frozen=True)
class Bundle:
    """The parts of a method_labs model directory inference needs (no weights loaded).

    Attributes:
        model_dir: the directory.
        diagnoses: diagnosis label codes, in output order.
        labs: lab-abnormality targets, in output order.
        names: code -> description (from ``labels.tsv`` or a given label manifest).
        prep: the preprocessing the model was trained with.
        meta: the whole model.json.
    """

    model_dir: Path
    diagnoses: list[str]
    labs: list[str]
    names: dict[str, str]
    prep: Preprocessing
    meta: dict[str, Any]


def load_bundle(model_dir: str | Path, label_manifest: Path | None = None) -> Bundle:
    """Read and check an ECG-only method_labs model directory (no weights loaded).

    Raises:
        BundleError: no model.json or weights; a file missing from or differing from
            ``SHA256SUMS``; not a model with both heads on an ECG-only encoder; a
            preprocessing that is missing, not reproducible here or inconsistent; a
            ``labels.tsv`` / ``lab_targets.tsv`` that disagrees with model.json.
    """
    model_dir = Path(model_dir)
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"{meta_path} not found: not a model directory")
    verify_files(model_dir, (META_FILE, WEIGHTS_FILE))
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"{meta_path}: not JSON ({err})") from None
    heads = meta.get("heads", {})
    if "diagnosis_head" not in heads or meta.get("tabular") is not None:
        raise BundleError(
            f"{model_dir}: explanations need the ECG-only method_labs model "
            "(diagnosis head + lab head on one encoder)"
        )
    prep = _preprocessing(meta, meta_path)
    diagnoses, labs = list(heads["diagnosis_head"]["labels"]), list(heads["head"]["labels"])
    own = model_dir / LABEL_FILE
    if own.is_file():
        check_manifest(own, "code", diagnoses, "heads.diagnosis_head.labels")
    if (model_dir / LAB_FILE).is_file():
        check_manifest(model_dir / LAB_FILE, "target", labs, "heads.head.labels")
    names: dict[str, str] = {}
    for manifest in (own if own.is_file() else None, label_manifest):
        if manifest is not None:
            names.update(read_label_names(Path(manifest)))
    return Bundle(model_dir, diagnoses, labs, names, prep, meta)


def _preprocessing(meta: dict[str, Any], meta_path: Path) -> Preprocessing:
    """``model.json["preprocessing"]``, checked: complete, reproducible, consistent."""
    if not meta.get("preprocessing"):
        raise BundleError(
            f"{meta_path}: no 'preprocessing' (written by training since the shard index "
            "records it); re-run the shard and training stages to record it"
        )
    where = f"{meta_path} preprocessing"
    try:
        prep = Preprocessing.from_dict(meta["preprocessing"], where)
        prep.check_reproducible(where)
    except (TypeError, ValueError) as err:
        raise BundleError(str(err)) from None
    check_preprocessing(prep, where)
    return prep


def torch_scorer(bundle: Bundle, threads: int | None = None) -> Scorer:
    """The trained modules (pipeline.models), crop-averaged by :class:`ExplainNet`."""
    import torch

    from pipeline.infer.network import OUTPUTS, ExplainNet
    from pipeline.models.supervised import load_supervised

    if threads:
        torch.set_num_threads(threads)
    model, _ = load_supervised(bundle.model_dir)
    p = bundle.prep
    net = ExplainNet(model.eval(), p.n_samples, int(p.crop_samples or 0), int(p.eval_crops or 0))

    @torch.inference_mode()
    def score(x: np.ndarray) -> dict[str, np.ndarray]:
        out = net(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return {k: v.numpy() for k, v in zip(OUTPUTS, out, strict=True)}

    return score


def onnx_scorer(bundle: Bundle, threads: int | None = None) -> Scorer:
    """``model.onnx`` under onnxruntime (CPU); needs only numpy and onnxruntime."""
    import onnxruntime as ort

    path = bundle.model_dir / ONNX_FILE
    if not path.is_file():
        raise BundleError(f"{path} not found: export the model first (rule export_model)")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    _check_onnx_shapes(session, bundle, path)
    names = [o.name for o in session.get_outputs()]

    def score(x: np.ndarray) -> dict[str, np.ndarray]:
        out = session.run(None, {"ecg": np.ascontiguousarray(x, np.float32)})
        return dict(zip(names, (np.asarray(o) for o in out), strict=True))

    return score


def _check_onnx_shapes(session: Any, bundle: Bundle, path: Path) -> None:
    """The graph's input is (batch, 12, n_samples) and its heads have the labels' widths."""
    p = bundle.prep
    want = {
        "ecg": [len(p.leads), p.n_samples],
        "diagnoses": [len(bundle.diagnoses)],
        "labs": [len(bundle.labs)],
    }
    # symbolic dimensions (str) are not fixed by the graph: only numbers are compared
    for node in [*session.get_inputs(), *session.get_outputs()]:
        got, need = list(node.shape[1:]), want.get(node.name)
        if need is None:
            continue
        fixed = [(g, n) for g, n in zip(got, need, strict=False) if isinstance(g, int)]
        if len(got) != len(need) or any(g != n for g, n in fixed):
            raise BundleError(
                f"{path}: {node.name!r} has shape {node.shape}, model.json says "
                f"(batch, {', '.join(map(str, need))})"
            )


def make_scorer(bundle: Bundle, backend: str = "torch", threads: int | None = None) -> Scorer:
    """A scorer of ``backend`` ("torch" or "onnx")."""
    makers: Mapping[str, Callable[[Bundle, int | None], Scorer]] = {
        "torch": torch_scorer,
        "onnx": onnx_scorer,
    }
    if backend not in makers:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    return makers[backend](bundle, threads)
