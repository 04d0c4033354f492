"""Stages 2-3 and the baselines: one supervised trainer over the model registry.

All models share :func:`pipeline.train.engine.fit` (the pre-training loop's sibling), a
masked binary cross-entropy (missing lab targets ignored), a warm-up + cosine (or
one-cycle) schedule, early stopping and best-epoch selection by validation macro AUROC
over crop-averaged probabilities (Strodthoff et al. 2024). With ``head_init: probe`` the
head is first fitted on the frozen starting encoder's cached embeddings, then the model
is fine-tuned (Kumar et al. 2022); a stage whose encoder is frozen trains its head on the
cached embeddings only. Every model finally reports a logistic-regression probe of its
own frozen embedding next to its head's validation AUROC (the head should not lose).
The loss is the model's section's (:mod:`pipeline.train.supervised_loss`): the BCE, plus an
L2-SP pull (``method_regularised``) or a distillation term towards a teacher's predictions
(``distilled``; :mod:`pipeline.train.teacher`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.data.preprocessing import training_preprocessing
from pipeline.io import atomic_path
from pipeline.registry import spec as registered_spec
from pipeline.tracking import TrackingConfig, stage_run
from pipeline.train.checkpoint import stage_checkpoint
from pipeline.train.data import (
    Batch,
    ECGDataset,
    EpochLoader,
    Mode,
    open_store,
    read_ids,
    read_names,
    read_targets,
)
from pipeline.train.embed import embed_crops
from pipeline.train.engine import (
    EpochCallback,
    TrainConfig,
    fit,
    save_weights,
    setup_runtime,
    write_history,
)
from pipeline.train.head_init import (
    HeadFit,
    fit_head,
    logistic_probe,
    masked_bce,
    refit_head,
    training_summary,
)
from pipeline.train.model import (
    ModelSpec,
    SupervisedModel,
    build_supervised,
    model_meta,
    param_groups,
    predict_model,
)
from pipeline.train.predict import macro_auroc, predict_probs, write_predictions
from pipeline.train.stage_config import StageConfig
from pipeline.train.supervised_loss import supervised_loss
from pipeline.train.tabular import TabularArrays, TabularPreprocessor, tabular_inputs
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
    """What a stage measured; ``probe_val_auroc`` is the logistic probe of its embedding."""

    best_epoch: int
    best_val_auroc: float
    test_auroc: float
    history: list[dict[str, float]]
    resumed_at: int = 0  # epochs restored from a resume checkpoint
    epochs_run: int = 0
    probe_val_auroc: float = float("nan")


def _forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch)


def train_supervised(
    kind: str,
    inputs: SupervisedInputs,
    model_dir: Path,
    predictions: Path,
    cfg: StageConfig,
    model_cfg: Mapping[str, Any],
    train_cfg: TrainConfig,
    tracking: TrackingConfig,
    *,
    checkpoint_dir: Path | None = None,
    threads: int | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> SupervisedResult:
    """Train one supervised model, write its model directory and test predictions.

    Args:
        kind: a registered model name (:func:`pipeline.registry.model_names`).
        inputs: files to read (see :class:`SupervisedInputs`).
        model_dir: model.safetensors, model.json, history.tsv (written atomically).
        predictions: the test predictions npz.
        cfg: the stage's config section; model_cfg: the ``model`` section (encoder sizes
            of models trained from scratch); train_cfg, tracking: shared sections.
        checkpoint_dir: where the resume checkpoint lives (None: no resume).
        threads: the rule's threads; on_epoch_end: per-epoch callback (tests).
    """
    spec = registered_spec(kind)
    device = setup_runtime(train_cfg, threads, cfg.seed)
    store = open_store(inputs.shard_index)
    ids = {p: read_ids(getattr(inputs, f"{p}_ids")) for p in ("train", "val", "test")}
    names = read_names(inputs.target_names, "code" if spec.task == "diagnoses" else "target")
    if not names:
        raise ValueError(f"{inputs.target_names}: no targets to train {kind} on")
    targets = {p: read_targets(inputs.targets, v, names) for p, v in ids.items()}
    prep, tab = _tabular(spec, inputs, ids)
    model = build_supervised(spec, cfg, model_cfg, len(names), prep, inputs.init_dir).to(device)
    # L2-SP's w0 is snapshotted here, before any step or resume, so it is the stage-1 encoder.
    step = supervised_loss(model.encoder, cfg)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg, step.l2sp is not None), weight_decay=cfg.weight_decay
    )
    teacher = _teacher(spec, inputs, ids["train"], names, train_cfg, cfg.batch_size, device)
    log.info(
        "%s: %d targets, %d train / %d val / %d test records, %d trainable parameters",
        kind,
        len(names),
        *(len(v) for v in ids.values()),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
    )

    def loader(part: str, mode: Mode, shuffle: bool) -> EpochLoader:
        ds = ECGDataset(
            store,
            ids[part],
            crop_samples=train_cfg.crop_samples,
            mode=mode,
            eval_crops=train_cfg.eval_crops,
            seed=cfg.seed,
            tabular=tab[part],
            targets=targets[part],
            teacher=teacher if part == "train" and mode == "train" else None,
        )
        # drop_last in training: batch norm (tabular encoder) needs >= 2 samples per batch;
        # shuffling per epoch still shows every record.
        return EpochLoader(
            ds,
            cfg.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            seed=cfg.seed,
            num_workers=train_cfg.num_workers,
        )

    train_loader, val_loader = loader("train", "train", True), loader("val", "eval", False)

    def validate(m: nn.Module) -> dict[str, float]:
        auroc, n_used = macro_auroc(targets["val"], predict_probs(m, val_loader, _forward, device))
        return {"val_auroc": auroc, "val_n_labels": float(n_used)}

    def cache(part: str) -> np.ndarray:
        return embed_crops(
            model,
            store,
            ids[part],
            train_cfg.crop_samples,
            train_cfg.eval_crops,
            batch_size=cfg.batch_size,
            device=device,
            tabular=tab[part],
            forward=_embed,
            desc=f"{kind} embed {part}",
        )

    params = {kind: asdict(cfg), "model": dict(model_cfg), "train": asdict(train_cfg)}
    config = {"stage": kind, **params}
    ckpt = stage_checkpoint(checkpoint_dir, config, inputs.files(), train_cfg)
    with stage_run(
        tracking.tracking_uri, tracking.experiment, Path(tracking.results_dir), kind, params
    ) as run:
        emb: dict[str, np.ndarray] = {}
        if _head_only(model):  # frozen encoder: one encoder pass, then head epochs
            emb = {p: cache(p) for p in ("train", "val")}
            head_cfg = HeadFit(cfg.loop(), cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.seed)
            result = fit_head(
                model.head,
                (emb["train"], targets["train"]),
                (emb["val"], targets["val"]),
                head_cfg,
                device,
                loss_fn=masked_bce,
                checkpoint=ckpt,
                run=run,
                desc=kind,
            )
            if cfg.head_refit:  # the warm-start settings (higher rate) may still gain
                refit_head(model.head, kind, emb, targets, cfg.head_fit(True), device, result, run)
        else:

            def warm_start() -> None:
                warm = {p: cache(p) for p in ("train", "val")}
                fitted = fit_head(
                    model.head,
                    (warm["train"], targets["train"]),
                    (warm["val"], targets["val"]),
                    cfg.head_fit(),
                    device,
                    loss_fn=masked_bce,
                    desc=f"{kind} head warm start",
                )
                run.log_metrics({"head_init_val_auroc": fitted.best_metric}, 0)

            result = fit(
                model,
                optimizer,
                train_loader,
                step,
                validate,
                loop=cfg.loop(validate_start=cfg.head_init == "probe"),
                monitor="val_auroc",
                mode="max",
                device=device,
                checkpoint=ckpt,
                run=run,
                desc=kind,
                on_epoch_end=on_epoch_end,
                on_fresh_start=warm_start if cfg.head_init == "probe" else None,
            )
            emb = {p: cache(p) for p in ("train", "val")}  # the final, selected encoder
            if cfg.head_refit:
                refit_head(model.head, kind, emb, targets, cfg.head_fit(True), device, result, run)
        probe = logistic_probe(
            emb["train"].mean(axis=1), targets["train"], emb["val"].mean(axis=1), targets["val"]
        )
        prob = predict_probs(model, loader("test", "eval", False), _forward, device)
        test_auroc, _ = macro_auroc(targets["test"], prob)
        summary = training_summary(result, probe, test_auroc)
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
        )
        meta["training"] = summary
        with atomic_path(model_dir) as tmp:
            tmp.mkdir()
            save_weights(tmp / "model.safetensors", model)
            (tmp / "model.json").write_text(json.dumps(meta, indent=2))
            write_history(tmp / "history.tsv", result.history)
        write_predictions(predictions, ids["test"], prob, targets["test"], names, spec.task)
        run.log_artifact(Path(model_dir) / "history.tsv")
    if ckpt is not None:
        ckpt.clear()
    log.info(
        "%s: best epoch %d of %d run, val macro AUROC %.4f (logistic probe of its frozen "
        "embedding %.4f), test macro AUROC %.4f",
        *(kind, result.best_epoch, result.epochs_run, result.best_metric),
        *(probe["val_auroc"], test_auroc),
    )
    return SupervisedResult(
        result.best_epoch,
        result.best_metric,
        test_auroc,
        result.history,
        result.resumed_at,
        result.epochs_run,
        probe["val_auroc"],
    )


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


def _embed(model: nn.Module, batch: Batch) -> torch.Tensor:
    assert isinstance(model, SupervisedModel)
    return model.embed(batch)


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
