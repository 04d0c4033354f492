"""Stage 1: joint-embedding pre-training of the ECG encoder against tabular data.

The ECG encoder (S4) and the tabular MLP each get a projector to the embedding dimension E;
a self-supervised objective aligns the two views of the same ECG so that the clinical
information of the tabular data moves into the ECG encoder. The objective is chosen by
config (``pretrain.objective``): Barlow Twins (Zbontar et al. 2021, the paper's), VICReg
(Bardes et al. 2022) or CLIP's symmetric InfoNCE (Radford et al. 2021); see
:mod:`pipeline.losses`. A logistic-regression probe on frozen embeddings (diagnoses) at the
end checks against representational collapse. With ``augment`` the partner of each ECG crop
is a second augmented crop of the same record instead of its tabular data
(:mod:`pipeline.train.two_view`, the ``ssl_ecg_only`` model's stage 1).
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

from pipeline.io import atomic_path
from pipeline.losses import Objective, ObjectiveOutput
from pipeline.models import (
    ECGEncoder,
    Projector,
    TabularEncoder,
    build_ecg_encoder,
    build_tabular_encoder,
    ecg_encoder_config,
)
from pipeline.tracking import TrackingConfig, stage_run
from pipeline.train.augment import EcgAugmentConfig
from pipeline.train.checkpoint import stage_checkpoint
from pipeline.train.data import (
    Batch,
    ECGDataset,
    EpochLoader,
    open_store,
    read_ids,
    read_names,
    read_targets,
    to_device,
)
from pipeline.train.embed import embed_records
from pipeline.train.engine import (
    EpochCallback,
    LoopConfig,
    TrainConfig,
    fit,
    save_weights,
    setup_runtime,
    write_history,
)
from pipeline.train.head_init import logistic_probe
from pipeline.train.pretrain_config import PretrainConfig
from pipeline.train.reproducibility import runtime_record
from pipeline.train.tabular import (
    TabularArrays,
    TabularPreprocessor,
    tabular_encoder_meta,
    tabular_inputs,
)
from pipeline.train.two_view import TwoViewEmbedding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainInputs:
    """Files stage 1 reads (all produced by upstream rules); the ECG-only stage 1 reads no
    features (the labels are for the collapse probe only)."""

    shard_index: Path
    labels: Path
    label_manifest: Path
    train_ids: Path
    val_ids: Path
    features: Path | None = None
    feature_manifest: Path | None = None

    def files(self) -> list[Path]:
        return [Path(v) for v in asdict(self).values() if v is not None]


@dataclass(frozen=True)
class PretrainResult:
    best_epoch: int
    best_val_loss: float
    probe_auroc: float
    history: list[dict[str, float]]
    resumed_at: int = 0  # epochs restored from a resume checkpoint


class JointEmbedding(nn.Module):
    """ECG encoder + projector and tabular encoder + projector, both to dimension E.

    Args:
        ecg_encoder, tab_encoder: the two branches.
        embed_dim: projector output E; hidden: projector hidden width.
        objective: the stage-1 loss. It is a submodule so that its parameters (CLIP's
            learnable logit scale) are optimised, checkpointed, kept with the best epoch
            and resumed together with the encoders. None: the caller applies a loss to
            what ``forward`` returns.
    """

    def __init__(
        self,
        ecg_encoder: ECGEncoder,
        tab_encoder: TabularEncoder,
        embed_dim: int,
        hidden: int,
        objective: Objective | None = None,
    ) -> None:
        super().__init__()
        self.ecg_encoder = ecg_encoder
        self.ecg_projector = Projector(ecg_encoder.out_dim, hidden, embed_dim)
        self.tab_encoder = tab_encoder
        self.tab_projector = Projector(tab_encoder.out_dim, hidden, embed_dim)
        self.objective = objective

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        z_ecg = self.ecg_projector(self.ecg_encoder(batch["ecg"]))  # (B, E)
        h_tab = self.tab_encoder(batch["x_cont"], batch["x_mask"], batch["x_cat"])
        return z_ecg, self.tab_projector(h_tab)  # (B, E), (B, E)

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> ObjectiveOutput:
        """The objective between the two projections of ``batch`` (``generator``: unused,
        the signature of :meth:`TwoViewEmbedding.loss`)."""
        if self.objective is None:
            raise ValueError("JointEmbedding has no objective")
        return self.objective(*self(batch))


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """The encoders and projectors, and the objective's parameters without weight decay.

    A temperature is a scale, not a weight: decaying ``log(1 / tau)`` pulls it towards 0
    (tau -> 1, near-uniform logits) against the loss, so CLIP trains it undecayed. An
    objective without parameters gives one group, the optimiser the stage always had.
    """
    named = list(model.named_parameters())
    groups: list[dict[str, Any]] = [
        {"params": [p for n, p in named if not n.startswith("objective.")], "name": "model"}
    ]
    own = [p for n, p in named if n.startswith("objective.")]
    if own:
        groups.append({"params": own, "weight_decay": 0.0, "name": "objective"})
    return groups


def pretrain(
    inputs: PretrainInputs,
    out_dir: Path,
    cfg: PretrainConfig,
    model_cfg: Mapping[str, Any],
    train_cfg: TrainConfig,
    tracking: TrackingConfig,
    *,
    checkpoint_dir: Path | None = None,
    threads: int | None = None,
    on_epoch_end: EpochCallback | None = None,
    augment: EcgAugmentConfig | None = None,
) -> PretrainResult:
    """Pre-train the ECG encoder and write ``out_dir`` (encoder, model.json, history, probe).

    Args:
        inputs: shard index, features + manifest, labels + manifest, train/val id files.
        out_dir: the pretrain directory, written atomically.
        cfg: the ``pretrain`` section; model_cfg: the ``model`` section.
        train_cfg: the ``train`` section; tracking: MLflow settings.
        checkpoint_dir: where the resume checkpoint lives (None: no resume).
        threads: the rule's threads (used unless train.num_threads is set).
        on_epoch_end: called after each epoch (tests use it to simulate a kill).
        augment: the ECG-only stage 1 (``pretrain_ecg_only``): the partner of each crop is a
            second crop of the record, both augmented so; None: the tabular data (the paper).
    """
    device = setup_runtime(train_cfg, threads, cfg.seed)
    store = open_store(inputs.shard_index)
    train_ids, val_ids = read_ids(inputs.train_ids), read_ids(inputs.val_ids)
    if len(train_ids) < 2 or len(val_ids) < 2:
        raise ValueError("pre-training needs at least 2 train and 2 val records")
    ecg_encoder = build_ecg_encoder(model_cfg["ecg_encoder"])
    objective = cfg.build_objective()
    tab: dict[str, TabularArrays | None] = {"train": None, "val": None}
    model: JointEmbedding | TwoViewEmbedding
    if augment is not None:
        prep, tab_cfg = None, None
        model = TwoViewEmbedding(
            ecg_encoder, cfg.embed_dim, cfg.projector_hidden, augment, objective
        )
        log.info("ECG-only pre-training on %d train / %d val records", len(train_ids), len(val_ids))
    else:
        prep, tab = _tabular(inputs, train_ids, val_ids)
        tab_cfg = dict(model_cfg["tabular_encoder"])
        tab_encoder = build_tabular_encoder(tab_cfg, prep.n_continuous, prep.cat_cardinalities)
        model = JointEmbedding(
            ecg_encoder, tab_encoder, cfg.embed_dim, cfg.projector_hidden, objective
        )
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model), lr=cfg.lr, weight_decay=cfg.weight_decay)

    crop, k = train_cfg.crop_samples, train_cfg.num_workers
    # drop_last: batch-normalising a branch needs >= 2 samples in every batch.
    train_loader = EpochLoader(
        ECGDataset(
            store,
            train_ids,
            crop_samples=crop,
            seed=cfg.seed,
            tabular=tab["train"],
            second_crop=augment is not None,
        ),
        cfg.batch_size,
        shuffle=True,
        drop_last=True,
        seed=cfg.seed,
        num_workers=k,
    )
    # Validation: one fixed random crop per record (seeded apart from training's crops).
    val_loader = EpochLoader(
        ECGDataset(
            store,
            val_ids,
            crop_samples=crop,
            seed=cfg.seed + 1,
            tabular=tab["val"],
            second_crop=augment is not None,
        ),
        cfg.batch_size,
        shuffle=False,
        drop_last=False,
        seed=cfg.seed + 1,
        num_workers=k,
    )

    def step(m: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        assert isinstance(m, JointEmbedding | TwoViewEmbedding)
        out = m.loss(batch)
        return out.loss, {k: v.item() for k, v in out.components.items()}

    def validate(m: nn.Module) -> dict[str, float]:
        assert isinstance(m, JointEmbedding | TwoViewEmbedding)
        return _val_loss(m, val_loader, device, cfg.seed + 1)

    stage = "pretrain" if augment is None else "pretrain_ecg_only"
    record = cfg.record() | ({} if augment is None else {"augment": asdict(augment)})
    params = {"pretrain": record, "model": dict(model_cfg), "train": asdict(train_cfg)}
    config = {"stage": stage, **params}
    ckpt = stage_checkpoint(checkpoint_dir, config, inputs.files(), train_cfg)
    with stage_run(
        tracking.tracking_uri, tracking.experiment, Path(tracking.results_dir), stage, params
    ) as run:
        run.log_metrics({"n_train": len(train_ids), "n_val": len(val_ids)}, 0)
        result = fit(
            model,
            optimizer,
            train_loader,
            step,
            validate,
            loop=LoopConfig(cfg.epochs, cfg.schedule, cfg.warmup_epochs, cfg.patience),
            monitor="val_loss",
            mode="min",
            device=device,
            checkpoint=ckpt,
            run=run,
            desc=stage,
            on_epoch_end=on_epoch_end,
        )
        probe = linear_probe(
            model.ecg_encoder, store, inputs, train_ids, val_ids, cfg, train_cfg, device
        )
        run.log_metrics({"probe_macro_auroc": probe["macro_auroc"]}, result.epochs_run)
        log.info(
            "linear probe macro AUROC %.4f over %d labels", probe["macro_auroc"], probe["n_labels"]
        )
        meta = {
            "ecg_encoder": ecg_encoder_config(model.ecg_encoder),
            "tabular_encoder": None if prep is None else tabular_encoder_meta(tab_cfg or {}, prep),
            "tabular": None if prep is None else prep.to_dict(),
            "partner": "tabular" if augment is None else "ecg",
            "pretrain": record,
            # the objective's learned state (CLIP: log logit scale), as selected with the best epoch
            "objective_state": {k: v.tolist() for k, v in objective.state_dict().items()},
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_metric,
            "n_train": len(train_ids),
            "n_val": len(val_ids),
            "num_threads": torch.get_num_threads(),  # part of what makes a run reproducible
            "runtime": runtime_record(),  # and what else (README: Determinism)
        }
        with atomic_path(out_dir) as tmp:
            tmp.mkdir()
            save_weights(tmp / "encoder.safetensors", model.ecg_encoder)
            (tmp / "model.json").write_text(json.dumps(meta, indent=2))
            write_history(tmp / "history.tsv", result.history)
            (tmp / "probe.json").write_text(json.dumps(probe, indent=2))
        run.log_artifact(Path(out_dir) / "history.tsv")
        run.log_artifact(Path(out_dir) / "probe.json")
    if ckpt is not None:
        ckpt.clear()
    return PretrainResult(
        result.best_epoch,
        result.best_metric,
        probe["macro_auroc"],
        result.history,
        result.resumed_at,
    )


def _tabular(
    inputs: PretrainInputs, train_ids: np.ndarray, val_ids: np.ndarray
) -> tuple[TabularPreprocessor, dict[str, TabularArrays | None]]:
    """The tabular branch's statistics (fitted on train) and inputs of both parts."""
    if inputs.features is None or inputs.feature_manifest is None:
        raise ValueError("pre-training against tabular data needs features and a feature manifest")
    parts = {"train": train_ids, "val": val_ids}
    prep, arrays = tabular_inputs(inputs.features, inputs.feature_manifest, "all", parts)
    log.info(
        "pre-training on %d train / %d val records, %d continuous + %d categorical features",
        *(len(train_ids), len(val_ids), prep.n_continuous, len(prep.categorical)),
    )
    return prep, dict(arrays)


def _val_loss(
    model: JointEmbedding | TwoViewEmbedding, loader: EpochLoader, device: torch.device, seed: int
) -> dict[str, float]:
    """Record-weighted mean of the objective and its components: ``val_loss``, ``val_<c>``.

    The ECG-only views are drawn from a generator seeded anew for every pass, so every
    epoch is validated on the same views (and the training generator is left untouched).
    """
    assert model.objective is not None
    generator = torch.Generator().manual_seed(seed)
    sums = dict.fromkeys(("loss", *model.objective.component_names), 0.0)
    n_seen = 0
    for batch in loader:
        n = len(batch["ecg"])
        # A trailing single record: Barlow Twins' and VICReg's batch statistics are
        # undefined; skipped for every objective, so all average over the same records.
        if n < 2:
            continue
        out = model.loss(to_device(batch, device), generator)
        for key, value in {"loss": out.loss, **out.components}.items():
            sums[key] += n * value.item()
        n_seen += n
    return {f"val_{k}": v / max(n_seen, 1) for k, v in sums.items()}


def linear_probe(
    encoder: nn.Module,
    store: Any,
    inputs: PretrainInputs,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    cfg: PretrainConfig,
    train_cfg: TrainConfig,
    device: torch.device,
) -> dict[str, Any]:
    """One-vs-rest logistic regression on frozen, crop-averaged ECG embeddings.

    Fitted on (a seeded subset of) the training records, scored by macro AUROC on the
    validation records over labels with both classes in both sets. A collapsed encoder
    (constant embeddings) scores about 0.5.
    """
    rng = np.random.default_rng(cfg.seed)
    n_fit = min(cfg.probe_max_train, len(train_ids))
    fit_ids = np.sort(rng.permutation(train_ids)[:n_fit])
    codes = read_names(inputs.label_manifest, "code")
    y_fit = read_targets(inputs.labels, fit_ids, codes)
    y_val = read_targets(inputs.labels, val_ids, codes)

    def embed(ids: np.ndarray) -> np.ndarray:
        return embed_records(
            encoder,
            store,
            ids,
            train_cfg.crop_samples,
            train_cfg.eval_crops,
            batch_size=cfg.batch_size,
            device=device,
            desc="probe embed",
        )

    x_fit = embed(fit_ids)
    probe = logistic_probe(x_fit, y_fit, embed(val_ids), y_val)
    auroc, n_used = probe["val_auroc"], int(probe["n_labels"])
    return {
        "macro_auroc": auroc,
        "n_labels": n_used,
        "n_labels_skipped": len(codes) - n_used,
        "n_fit": int(n_fit),
        "n_val": len(val_ids),
        "embedding_dim": int(x_fit.shape[1]),
    }
