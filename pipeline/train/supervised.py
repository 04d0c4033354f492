"""Stages 2-3 and the baselines: one supervised trainer over the model registry.

Every model is an instance of the stage template (:mod:`pipeline.train.stage`): its own
parts are the model (:mod:`pipeline.train.model`) and its task (:class:`SupervisedTask`: a
masked binary cross-entropy, missing lab targets ignored; best epoch by validation macro
AUROC over crop-averaged probabilities, Strodthoff et al. 2024). With ``head_init:
linear_fit`` the head is first fitted on the frozen starting encoder's cached embeddings
(:class:`HeadWarmStart`), then the model is fine-tuned (Kumar et al. 2022); a stage whose
encoder is frozen trains its head on the cached embeddings only
(:mod:`pipeline.train.head_fit`). Every model finally reports the logistic reference of
its own frozen embedding next to its head's validation AUROC (the head should not lose).
The loss is the model's section's (:mod:`pipeline.train.supervised_loss`): the BCE, plus an
L2-SP pull (``method_regularised``) or a distillation term towards a teacher's predictions
(``distilled``; :mod:`pipeline.train.teacher`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pipeline.data.preprocessing import training_preprocessing
from pipeline.data.tabular import TabularArrays, TabularPreprocessor, tabular_inputs
from pipeline.losses.masked_bce import masked_bce
from pipeline.registry import spec as registered_spec
from pipeline.train.data import Batch, EpochLoader, read_names, read_targets
from pipeline.train.distributed import data_parallel, end_training
from pipeline.train.engine import FitResult, MetricSink, TrainConfig
from pipeline.train.head_fit import HeadFit, fit_head, refit_head
from pipeline.train.logistic_reference import logistic_reference
from pipeline.train.model import (
    ModelSpec,
    SupervisedModel,
    build_supervised,
    model_meta,
    param_groups,
    predict_model,
)
from pipeline.train.predict import macro_auroc, predict_probs, write_predictions
from pipeline.train.stage import (
    StageRuntime,
    fit_stage,
    open_stage,
    tracked_stage,
    write_stage_dir,
)
from pipeline.train.stage_config import StageConfig
from pipeline.train.supervised_data import SupervisedData
from pipeline.train.supervised_loss import SupervisedLoss, supervised_loss
from pipeline.train.teacher import teacher_logits

__all__ = [
    "StageConfig",
    "SupervisedInputs",
    "SupervisedResult",
    "masked_bce",
    "predict_model",
    "train_supervised",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisedInputs:
    """Files a supervised stage reads.

    Attributes:
        targets: labels.parquet (diagnoses) or lab_targets.parquet (labs).
        target_names: label_manifest.tsv (column ``code``) or lab_targets_selected.tsv
            (column ``target``); their order is the output order.
        features, feature_manifest: tabular inputs (multimodal baselines only).
        init_dir: the stage-1 directory (method_diagnoses, ssl_ecg_only) or the model
            directory the encoder comes from (method_labs: method_diagnoses').
        teacher_dir: the teacher's model directory (distilled); it reads ``features`` when
            the teacher has tabular inputs.
    """

    shard_index: Path
    train_ids: Path
    val_ids: Path
    test_ids: Path
    targets: Path
    target_names: Path
    features: Path | None = None
    feature_manifest: Path | None = None
    init_dir: Path | None = None
    teacher_dir: Path | None = None

    def files(self) -> list[Path]:
        dirs = [Path(d) for d in (self.init_dir, self.teacher_dir) if d is not None]
        out = [Path(v) for v in asdict(self).values() if v is not None and Path(v) not in dirs]
        for d in dirs:  # a directory's mtime does not track its files
            out += sorted(p for p in d.iterdir() if p.is_file())
        return out


@dataclass(frozen=True)
class SupervisedResult:
    """What a stage measured; ``probe_val_auroc`` is the logistic reference on its embedding."""

    best_epoch: int
    best_val_auroc: float
    test_auroc: float
    history: list[dict[str, float]]
    resumed_at: int = 0  # epochs restored from a resume checkpoint
    epochs_run: int = 0
    probe_val_auroc: float = float("nan")


def _forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch)


class SupervisedTask:
    """A supervised stage's own part of the loop: its loss per batch (the model's
    :class:`SupervisedLoss`) and the validation macro AUROC over crop-averaged
    probabilities."""

    monitor = "val_auroc"
    mode: Literal["min", "max"] = "max"

    def __init__(
        self,
        loss_fn: SupervisedLoss,
        val_loader: EpochLoader,
        val_targets: np.ndarray,
        device: torch.device,
    ) -> None:
        self.loss_fn = loss_fn
        self.val_loader = val_loader
        self.val_targets = val_targets
        self.device = device

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss_fn(model, batch)

    def validate(self, model: nn.Module) -> dict[str, float]:
        prob = predict_probs(model, self.val_loader, _forward, self.device)  # (N, T)
        auroc, n_used = macro_auroc(self.val_targets, prob)
        return {"val_auroc": auroc, "val_n_labels": float(n_used)}


@dataclass(frozen=True)
class HeadWarmStart:
    """``head_init: linear_fit``: the head fitted on the starting encoder's cached
    embeddings before end-to-end training (run only on a fresh start: a resumed run has it
    in its checkpoint)."""

    model: SupervisedModel
    records: SupervisedData
    name: str
    run: MetricSink

    def fit(self) -> None:
        emb, targets = self.records.embeddings(self.model, self.name), self.records.targets
        fitted = fit_head(
            self.model.head,
            (emb["train"], targets["train"]),
            (emb["val"], targets["val"]),
            self.records.cfg.head_fit(),
            self.records.data.device,
            desc=f"{self.name} head warm start",
        )
        self.run.log_metrics({"head_init_val_auroc": fitted.best_metric}, 0)


@data_parallel
def train_supervised(
    kind: str,
    inputs: SupervisedInputs,
    model_dir: Path,
    predictions: Path,
    cfg: StageConfig,
    model_cfg: Mapping[str, Any],
    runtime: StageRuntime,
) -> SupervisedResult:
    """Train one supervised model, write its model directory and test predictions.

    Args:
        kind: a registered model name (:func:`pipeline.registry.model_names`).
        inputs: files to read (see :class:`SupervisedInputs`).
        model_dir: model.safetensors, model.json, history.tsv (written atomically).
        predictions: the test predictions npz.
        cfg: the model's settings; model_cfg: the ``model`` section (encoder sizes of
            models trained from scratch).
        runtime: the ``train`` section, MLflow, threads and resume checkpoint.

    With ``train.devices`` N > 1 end-to-end training runs on N processes
    (:mod:`pipeline.train.distributed`); a head on a frozen encoder trains on rank 0 alone.
    """
    spec = registered_spec(kind)
    id_files = {p: getattr(inputs, f"{p}_ids") for p in ("train", "val", "test")}
    data = open_stage(runtime, cfg.seed, inputs.shard_index, id_files)
    train_cfg = runtime.train
    ids, device = data.ids, data.device
    names = read_names(inputs.target_names, "code" if spec.task == "diagnoses" else "target")
    if not names:
        raise ValueError(f"{inputs.target_names}: no targets to train {kind} on")
    targets = {p: read_targets(inputs.targets, v, names) for p, v in ids.items()}
    prep, tab = _tabular(spec, inputs, ids)
    model = build_supervised(spec, cfg, model_cfg, len(names), prep, inputs.init_dir).to(device)
    # L2-SP's w0 is snapshotted here, before any step or resume, so it is the stage-1 encoder.
    loss_fn = supervised_loss(model.encoder, cfg)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg, loss_fn.l2sp is not None), weight_decay=cfg.weight_decay
    )
    with data.precision.autocast():  # every forward pass in the stage's precision
        teacher = _teacher(spec, inputs, ids["train"], names, train_cfg, cfg.batch_size, device)
    log.info(
        "%s: %d targets, %d train / %d val / %d test records, %d trainable parameters",
        kind,
        len(names),
        *(len(v) for v in ids.values()),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    records = SupervisedData(data, tab, targets, teacher, cfg, train_cfg)
    train_loader = records.loader("train", "train", True)
    task = SupervisedTask(loss_fn, records.loader("val", "eval", False), targets["val"], device)

    params: dict[str, Any] = {kind: asdict(cfg), "model": dict(model_cfg)}
    # train.precision as set and as resolved on this device (auto depends on it)
    params |= {"train": asdict(train_cfg), "precision": data.precision.name}
    with tracked_stage(kind, params, inputs.files(), runtime) as (ckpt, run):
        if _head_only(model):  # frozen encoder: one encoder pass, then head epochs
            end_training()  # on one process: data-parallel ranks > 0 leave here
            emb = records.embeddings(model, kind)
            head_cfg = HeadFit(cfg.loop(), cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.seed)
            result = fit_head(
                model.head,
                (emb["train"], targets["train"]),
                (emb["val"], targets["val"]),
                head_cfg,
                device,
                checkpoint=ckpt,
                run=run,
                desc=kind,
            )
        else:
            linear_fit = cfg.head_init == "linear_fit"
            warm = HeadWarmStart(model, records, kind, run)
            result = fit_stage(
                *(model, optimizer, train_loader, task, cfg.loop(validate_start=linear_fit)),
                device,
                checkpoint=ckpt,
                run=run,
                desc=kind,
                on_epoch_end=runtime.on_epoch_end,
                on_fresh_start=warm.fit if linear_fit else None,
                precision=data.precision,
            )
            emb = records.embeddings(model, kind)  # the final, selected encoder
        if cfg.head_refit:  # the warm-start settings (higher rate) may still gain
            refit_head(model.head, kind, emb, targets, cfg.head_fit(True), device, result, run)
        reference = logistic_reference(
            emb["train"].mean(axis=1), targets["train"], emb["val"].mean(axis=1), targets["val"]
        )
        with data.precision.autocast():
            prob = predict_probs(model, records.loader("test", "eval", False), _forward, device)
        test_auroc, _ = macro_auroc(targets["test"], prob)
        summary = training_summary(result, reference, test_auroc)
        run.log_metrics(summary, result.epochs_run)
        meta = model_meta(
            spec,
            model,
            names,
            prep,
            cfg,
            result.best_epoch,
            result.best_metric,
            model_cfg["tabular_encoder"],
            preprocessing=training_preprocessing(
                inputs.shard_index, train_cfg.crop_samples, train_cfg.eval_crops
            ),
            precision=data.precision.name,
        )
        meta["training"] = summary
        write_stage_dir(model_dir, {"model.safetensors": model}, meta, result.history)
        write_predictions(predictions, ids["test"], prob, targets["test"], names, spec.task)
        run.log_artifact(Path(model_dir) / "history.tsv")
    log.info(
        "%s: best epoch %d of %d run, val macro AUROC %.4f (logistic reference on its frozen "
        "embedding %.4f), test macro AUROC %.4f",
        *(kind, result.best_epoch, result.epochs_run, result.best_metric),
        *(reference["val_auroc"], test_auroc),
    )
    return SupervisedResult(
        result.best_epoch,
        result.best_metric,
        test_auroc,
        result.history,
        result.resumed_at,
        result.epochs_run,
        reference["val_auroc"],
    )


def training_summary(
    result: FitResult, reference: Mapping[str, float], test_auroc: float
) -> dict[str, float]:
    """Scalars logged to MLflow and model.json: the head against the logistic reference
    on the same frozen embedding (``probe_*``: the keys existing runs carry)."""
    return {
        "best_epoch": float(result.best_epoch),
        "epochs_run": float(result.epochs_run),
        "stopped_early": float(result.stopped_early),
        "head_refit_epochs": float(result.head_refit_epochs),
        "head_val_auroc": result.best_metric,
        "probe_val_auroc": reference["val_auroc"],
        "probe_n_labels": reference["n_labels"],
        "head_minus_probe_val_auroc": result.best_metric - reference["val_auroc"],
        "test_auroc": test_auroc,
    }


def _teacher(
    spec: ModelSpec,
    inputs: SupervisedInputs,
    train_ids: np.ndarray,
    names: list[str],
    train_cfg: TrainConfig,
    batch_size: int,
    device: torch.device,
) -> np.ndarray | None:
    """The teacher's logits for the training records (distilled), else None."""
    if spec.teacher is None:
        return None
    if inputs.teacher_dir is None:
        raise ValueError(f"{spec.name} is distilled from {spec.teacher}: pass its model directory")
    # Loading the teacher builds modules, which draws from torch's global generator: forked,
    # so the student's dropout and crops are those it would have without a teacher.
    with torch.random.fork_rng(devices=[]):
        return teacher_logits(
            inputs.teacher_dir,
            inputs.shard_index,
            train_ids,
            names,
            train_cfg,
            features=inputs.features,
            batch_size=batch_size,
            device=device,
        )


def _head_only(model: SupervisedModel) -> bool:
    """True when only the head trains (frozen encoder, no tabular encoder)."""
    return all(n.startswith("head.") for n, p in model.named_parameters() if p.requires_grad)


def _tabular(
    spec: ModelSpec, inputs: SupervisedInputs, ids: Mapping[str, np.ndarray]
) -> tuple[TabularPreprocessor | None, dict[str, TabularArrays | None]]:
    if spec.tabular is None:
        return None, dict.fromkeys(ids)
    if inputs.features is None or inputs.feature_manifest is None:
        raise ValueError(f"{spec.name} needs features and a feature manifest")
    prep, arrays = tabular_inputs(inputs.features, inputs.feature_manifest, spec.tabular, ids)
    return prep, dict(arrays)
