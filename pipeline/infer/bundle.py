"""A model directory as inference sees it: labels, names, preprocessing, and a scorer.

Works on a training output (``results/models/method_labs``: model.safetensors + model.json)
and on an exported directory (``results/export/method_labs``: the same two files plus
``model.onnx``, ``labels.tsv``, ``lab_targets.tsv`` and the model card). Everything that
turns a record into model input comes from ``model.json["preprocessing"]``.

Scorers map a batch of preprocessed records (B, 12, n_samples) float32 to
``{"diagnoses": (B, K_dx), "labs": (B, K_lab), "embedding": (B, H)}``: ``torch`` runs the
trained modules, ``onnx`` runs ``model.onnx`` with onnxruntime (neither torch nor the
training code is imported on that path).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.preprocessing import Preprocessing
from pipeline.manifests import label_descriptions

Scorer = Callable[[np.ndarray], dict[str, np.ndarray]]
BACKENDS = ("torch", "onnx")
ONNX_FILE = "model.onnx"
LABEL_FILE = "labels.tsv"
LAB_FILE = "lab_targets.tsv"


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
    """Read and check ``model.json`` of an ECG-only method_labs model directory.

    Raises:
        FileNotFoundError: no model.json.
        ValueError: not a model with both heads on an ECG-only encoder, or no preprocessing.
    """
    model_dir = Path(model_dir)
    meta_path = model_dir / "model.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: not a model directory")
    meta = json.loads(meta_path.read_text())
    heads = meta.get("heads", {})
    if "diagnosis_head" not in heads or meta.get("tabular") is not None:
        raise ValueError(
            f"{model_dir}: explanations need the ECG-only method_labs model "
            "(diagnosis head + lab head on one encoder)"
        )
    if not meta.get("preprocessing"):
        raise ValueError(
            f"{meta_path}: no 'preprocessing' (written by training since the shard index "
            "records it); re-run the shard and training stages to record it"
        )
    prep = Preprocessing.from_dict(meta["preprocessing"], f"{meta_path} preprocessing")
    prep.check_reproducible(f"{meta_path} preprocessing")
    for key in ("crop_samples", "eval_crops"):
        if getattr(prep, key) is None:
            raise ValueError(f"{meta_path}: preprocessing.{key} missing")
    names: dict[str, str] = {}
    own = model_dir / LABEL_FILE
    for manifest in (own if own.is_file() else None, label_manifest):
        if manifest is not None:
            names.update(read_label_names(Path(manifest)))
    return Bundle(
        model_dir,
        list(heads["diagnosis_head"]["labels"]),
        list(heads["head"]["labels"]),
        names,
        prep,
        meta,
    )


def torch_scorer(bundle: Bundle, threads: int | None = None) -> Scorer:
    """The trained modules (pipeline.models), crop-averaged by :class:`ExplainNet`."""
    import torch

    from pipeline.infer.network import OUTPUTS, ExplainNet
    from pipeline.train.model import load_supervised

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
        raise FileNotFoundError(f"{path} not found: export the model first (ecg-explain export)")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def score(x: np.ndarray) -> dict[str, np.ndarray]:
        out = session.run(None, {"ecg": np.ascontiguousarray(x, np.float32)})
        return dict(zip(names, (np.asarray(o) for o in out), strict=True))

    return score


def make_scorer(bundle: Bundle, backend: str = "torch", threads: int | None = None) -> Scorer:
    """A scorer of ``backend`` ("torch" or "onnx")."""
    makers: Mapping[str, Callable[[Bundle, int | None], Scorer]] = {
        "torch": torch_scorer,
        "onnx": onnx_scorer,
    }
    if backend not in makers:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    return makers[backend](bundle, threads)
