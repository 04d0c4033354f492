"""Stage 1: joint-embedding pre-training of the ECG encoder against tabular data.

The ECG encoder (S4) and the tabular MLP each get a projector to the embedding dimension E;
a self-supervised objective aligns the two views of the same ECG so that the clinical
information of the tabular data moves into the ECG encoder. The objective is chosen by
config (``pretrain.objective``): Barlow Twins (Zbontar et al. 2021, the paper's), VICReg
(Bardes et al. 2022) or CLIP's symmetric InfoNCE (Radford et al. 2021); see
:mod:`pipeline.losses`. The stage is an instance of the template of
:mod:`pipeline.train.stage`: its own parts are the model (:class:`JointEmbedding`), its
task (:class:`EmbeddingTask`: the objective, the validation loss) and, at the end, the
collapse check (:mod:`pipeline.train.collapse_check`). With ``augment`` the partner of each ECG crop
is a second augmented crop of the same record instead of its tabular data
(:mod:`pipeline.train.two_view`, the ``ssl_ecg_only`` model's stage 1).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pipeline.data.tabular import (
    TabularArrays,
    TabularPreprocessor,
    tabular_encoder_meta,
    tabular_inputs,
)
from pipeline.losses import Objective, ObjectiveOutput
from pipeline.models import (
    ECGEncoder,
    Projector,
    TabularEncoder,
    build_ecg_encoder,
    build_tabular_encoder,
    ecg_encoder_config,
)
from pipeline.train.augment import EcgAugmentConfig
from pipeline.train.collapse_check import collapse_check
from pipeline.train.data import Batch, ECGDataset, EpochLoader, read_ids, to_device
from pipeline.train.distributed import data_parallel
from pipeline.train.engine import TrainConfig
from pipeline.train.loader_options import loader_options
from pipeline.train.pretrain_config import PretrainConfig
from pipeline.train.reproducibility import runtime_record
from pipeline.train.stage import (
    StageData,
    StageRuntime,
    fit_stage,
    open_stage,
    tracked_stage,
    write_stage_dir,
)
from pipeline.train.two_view import TwoViewEmbedding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainInputs:
    """Files stage 1 reads (all produced by upstream rules); the ECG-only stage 1 reads no
    features (the labels are for the collapse probe only). With ``beyond_cohort`` on,
    ``beyond_ids`` lists the out-of-cohort training records and ``beyond_features`` their
    features (:mod:`pipeline.data.beyond`); ``shard_index`` then holds their ECGs too.
    """

    shard_index: Path
    labels: Path
    label_manifest: Path
    train_ids: Path
    val_ids: Path
    features: Path | None = None
    feature_manifest: Path | None = None
    beyond_ids: Path | None = None
    beyond_features: Path | None = None

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


class EmbeddingTask:
    """Stage 1's own part of the loop: the objective per batch, the validation loss.

    Args:
        val_loader: the validation records (one fixed crop each).
        device: where the model is; val_seed: seeds the ECG-only views of validation.
    """

    monitor = "val_loss"
    mode: Literal["min", "max"] = "min"

    def __init__(self, val_loader: EpochLoader, device: torch.device, val_seed: int) -> None:
        self.val_loader = val_loader
        self.device = device
        self.val_seed = val_seed

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        assert isinstance(model, JointEmbedding | TwoViewEmbedding)
        out = model.loss(batch)
        return out.loss, {k: v.item() for k, v in out.components.items()}

    def validate(self, model: nn.Module) -> dict[str, float]:
        assert isinstance(model, JointEmbedding | TwoViewEmbedding)
        return _val_loss(model, self.val_loader, self.device, self.val_seed)


@data_parallel
def pretrain(
    inputs: PretrainInputs,
    out_dir: Path,
    cfg: PretrainConfig,
    model_cfg: Mapping[str, Any],
    runtime: StageRuntime,
    *,
    augment: EcgAugmentConfig | None = None,
) -> PretrainResult:
    """Pre-train the ECG encoder and write ``out_dir`` (encoder, model.json, history, probe).

    Args:
        inputs: shard index, features + manifest, labels + manifest, train/val id files.
        out_dir: the pretrain directory, written atomically.
        cfg: the ``pretrain`` section; model_cfg: the ``model`` section.
        runtime: the ``train`` section, MLflow, threads and resume checkpoint.
        augment: the ECG-only stage 1 (``pretrain_ecg_only``): the partner of each crop is a
            second crop of the record, both augmented so; None: the tabular data (the paper).

    With ``train.devices`` N > 1 it runs on N processes (:mod:`pipeline.train.distributed`).
    """
    id_files = {"train": inputs.train_ids, "val": inputs.val_ids}
    cohort_data = open_stage(runtime, cfg.seed, inputs.shard_index, id_files)
    data = _with_beyond(cohort_data, inputs.beyond_ids)  # the collapse check keeps the cohort's
    train_cfg = runtime.train
    ids, device = data.ids, data.device
    if len(ids["train"]) < 2 or len(ids["val"]) < 2:
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
        log.info(
            "ECG-only pre-training on %d train / %d val records", len(ids["train"]), len(ids["val"])
        )
    else:
        prep, tab = _tabular(inputs, ids["train"], ids["val"])
        tab_cfg = dict(model_cfg["tabular_encoder"])
        tab_encoder = build_tabular_encoder(tab_cfg, prep.n_continuous, prep.cat_cardinalities)
        model = JointEmbedding(
            ecg_encoder, tab_encoder, cfg.embed_dim, cfg.projector_hidden, objective
        )
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # drop_last: batch-normalising a branch needs >= 2 samples in every batch.
    train_loader = _loader(data, "train", cfg.seed, tab, train_cfg, cfg.batch_size, augment)
    # Validation: one fixed random crop per record (seeded apart from training's crops).
    val_loader = _loader(data, "val", cfg.seed + 1, tab, train_cfg, cfg.batch_size, augment)
    task = EmbeddingTask(val_loader, device, cfg.seed + 1)

    stage = "pretrain" if augment is None else "pretrain_ecg_only"
    record = cfg.record() | ({} if augment is None else {"augment": asdict(augment)})
    params: dict[str, Any] = {"pretrain": record, "model": dict(model_cfg)}
    # train.precision as set and as resolved on this device (auto depends on it)
    params |= {"train": asdict(train_cfg), "precision": data.precision.name}
    with tracked_stage(stage, params, inputs.files(), runtime) as (ckpt, run):
        run.log_metrics({"n_train": len(ids["train"]), "n_val": len(ids["val"])}, 0)
        result = fit_stage(
            *(model, optimizer, train_loader, task, cfg.loop(), device),
            checkpoint=ckpt,
            run=run,
            desc=stage,
            on_epoch_end=runtime.on_epoch_end,
            precision=data.precision,
        )
        with data.precision.autocast():  # embeddings as the encoder computes them in training
            collapse = collapse_check(
                model.ecg_encoder,
                data.store,
                inputs.labels,
                inputs.label_manifest,
                cohort_data.ids,
                seed=cfg.seed,
                max_train=cfg.probe_max_train,
                batch_size=cfg.batch_size,
                train_cfg=train_cfg,
                device=device,
            )
        run.log_metrics({"probe_macro_auroc": collapse["macro_auroc"]}, result.epochs_run)
        log.info(
            "collapse check: logistic reference macro AUROC %.4f over %d labels",
            *(collapse["macro_auroc"], collapse["n_labels"]),
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
            "n_train": len(ids["train"]),
            "n_val": len(ids["val"]),
            **_beyond_record(data, cohort_data),
            "num_threads": torch.get_num_threads(),  # part of what makes a run reproducible
            # and what else the bytes depend on (README: Determinism)
            "runtime": runtime_record(data.precision.name),
        }
        weights = {"encoder.safetensors": model.ecg_encoder}
        write_stage_dir(out_dir, weights, meta, result.history, {"probe.json": collapse})
        run.log_artifact(Path(out_dir) / "history.tsv")
        run.log_artifact(Path(out_dir) / "probe.json")
    return PretrainResult(
        result.best_epoch,
        result.best_metric,
        collapse["macro_auroc"],
        result.history,
        result.resumed_at,
    )


def _loader(
    data: StageData,
    part: str,
    seed: int,
    tab: Mapping[str, TabularArrays | None],
    train_cfg: TrainConfig,
    batch_size: int,
    augment: EcgAugmentConfig | None,
) -> EpochLoader:
    """Random crops of ``part`` (shuffled, full batches only, in training), seeded by ``seed``;
    with ``augment`` each item carries a second crop (the ECG-only partner)."""
    dataset = ECGDataset(
        data.store,
        data.ids[part],
        crop_samples=train_cfg.crop_samples,
        seed=seed,
        tabular=tab[part],
        second_crop=augment is not None,
    )
    training = part == "train"
    return EpochLoader(
        dataset,
        batch_size,
        shuffle=training,
        drop_last=training,
        seed=seed,
        options=loader_options(train_cfg.num_workers, data.device),
    )


def _with_beyond(data: StageData, beyond_ids: Path | None) -> StageData:
    """``data`` with the out-of-cohort training records appended to its training part.

    None (``beyond_cohort`` off): ``data`` itself, today's training set. The records were
    admitted against the folds upstream (:func:`pipeline.data.beyond.beyond_train_ids`);
    one that is a cohort record here would be counted twice or leak, so it stops the stage.
    """
    if beyond_ids is None:
        return data
    extra = read_ids(beyond_ids)
    for part, part_ids in data.ids.items():
        n_both = int(np.isin(extra, part_ids).sum())
        if n_both:
            raise ValueError(f"{beyond_ids}: {n_both} record(s) are also {part} records")
    log.info(
        "stage 1: %d cohort + %d out-of-cohort training records", len(data.ids["train"]), len(extra)
    )
    return replace(data, ids={**data.ids, "train": np.concatenate([data.ids["train"], extra])})


def _beyond_record(data: StageData, cohort_data: StageData) -> dict[str, int]:
    """model.json's count of out-of-cohort training records (absent when there are none,
    so a run with ``beyond_cohort`` off writes what it always wrote)."""
    n = len(data.ids["train"]) - len(cohort_data.ids["train"])
    return {"n_train_beyond": n} if n else {}


def _tabular(
    inputs: PretrainInputs, train_ids: np.ndarray, val_ids: np.ndarray
) -> tuple[TabularPreprocessor, dict[str, TabularArrays | None]]:
    """The tabular branch's statistics (fitted on train) and inputs of both parts."""
    if inputs.features is None or inputs.feature_manifest is None:
        raise ValueError("pre-training against tabular data needs features and a feature manifest")
    parts = {"train": train_ids, "val": val_ids}
    tables = [inputs.features, *([inputs.beyond_features] if inputs.beyond_features else [])]
    prep, arrays = tabular_inputs(tables, inputs.feature_manifest, "all", parts)
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
