"""The probe stage: how much clinical knowledge reached each ECG encoder.

For each encoder (untrained random init, the stage-1 encoders and every registered model
with ``probe=True``: signal-only, the method's stage 2 and the models beyond the paper), the
records are embedded once (frozen, crop-averaged like evaluation), and linear probes are
fitted on the training records and scored on the test records
(:mod:`pipeline.evaluation.probe_fit`): (a) lab values from the feature table (R2) and the
lab-abnormality flags of the lab targets (AUROC), which exist on real MIMIC; (b) on the
synthetic cohort, optionally, the latent physiology the cohort was generated from. No
training stage reads the ground truth; only this stage, and only when asked.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file
from threadpoolctl import threadpool_limits

from pipeline.data.labs import slug
from pipeline.evaluation.predictions import read_tsv
from pipeline.evaluation.probe_fit import ProbeScore, Split, Variable, probe_flag, probe_value
from pipeline.evaluation.probe_report import ProbeOutputs, write_outputs
from pipeline.evaluation.probe_scores import (
    EncoderScores,
    read_scores,
    same_variables,
    write_scores,
)
from pipeline.models import ECGEncoder, build_ecg_encoder
from pipeline.train.data import read_ids
from pipeline.train.embed import embed_records

if TYPE_CHECKING:
    from pipeline.data.ecg_store import ShardStore

log = logging.getLogger(__name__)

# Latent variables probed on the synthetic cohort: values (R2) and flags (AUROC).
GT_VALUES = (
    "potassium",
    "calcium",
    "sodium",
    "creatinine",
    "hemoglobin",
    "troponin",
    "albumin",
    "heart_rate",
)
GT_FLAGS = {
    "af": pl.col("af"),
    "bbb": pl.col("bbb") > 0,
    "ischaemia": pl.col("ischaemia"),
    "stemi": pl.col("stemi"),
    "hf": pl.col("hf"),
    "sepsis": pl.col("sepsis"),
    "aki": pl.col("aki"),
    "ckd": pl.col("ckd_stage") > 0,
    "anaemia": pl.col("anaemia") > 0,
}


@dataclass(frozen=True)
class ProbeConfig:
    """The ``probe`` config section (``ground_truth`` is resolved by the rule).

    Attributes:
        seed: Weights of the untrained encoder and the subsample of training records.
        ground_truth: auto | true | false (the rule passes the file only when it applies).
        lab_stat: Feature-table statistic probed as a lab's value (``labvalues_<lab>_<stat>``).
        max_train: Training records embedded for the fits (0: all); bounds the cost on MIMIC.
        ridge_alphas: Ridge penalties tried; the best on validation R2 is used.
        logistic_cs: Inverse logistic penalties tried; the best on validation AUROC is used.
        min_records: A variable needs this many measured train and test records.
        batch_size: Records per embedding batch.
    """

    seed: int = 0
    ground_truth: str | bool = "auto"
    lab_stat: str = "mean"
    max_train: int = 0
    ridge_alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    logistic_cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    min_records: int = 20
    batch_size: int = 128

    def __post_init__(self) -> None:
        if not self.ridge_alphas or not self.logistic_cs:
            raise ValueError("probe.ridge_alphas and probe.logistic_cs must not be empty")
        if self.max_train < 0 or self.min_records < 2:
            raise ValueError("probe.max_train must be >= 0 and probe.min_records >= 2")


@dataclass(frozen=True)
class ProbeInputs:
    """Files the probe reads; ``ground_truth`` only on the synthetic cohort when enabled."""

    shard_index: Path
    train_ids: Path
    val_ids: Path
    test_ids: Path
    features: Path
    lab_targets: Path
    lab_targets_selected: Path
    lab_target_manifest: Path
    ground_truth: Path | None = None


@dataclass(frozen=True)
class EmbedSettings:
    """How records are embedded: eval crops as in evaluation, on one device."""

    crop_samples: int
    eval_crops: int
    device: torch.device


def load_encoder(source: Path | None, model_cfg: Mapping[str, object], seed: int) -> ECGEncoder:
    """The encoder of a pretrain or supervised model directory, or (None) a random init."""
    if source is None:
        torch.manual_seed(seed)
        return build_ecg_encoder(model_cfg["ecg_encoder"])  # type: ignore[arg-type]
    source = Path(source)
    if (source / "encoder.safetensors").is_file():  # stage 1
        meta = json.loads((source / "model.json").read_text())
        encoder = build_ecg_encoder(meta["ecg_encoder"])
        encoder.load_state_dict(load_file(str(source / "encoder.safetensors")))
        return encoder
    if (source / "model.safetensors").is_file():
        from pipeline.models.supervised import load_supervised

        return load_supervised(source)[0].encoder
    raise FileNotFoundError(f"{source}: neither encoder.safetensors nor model.safetensors")


def _aligned(frame: pl.DataFrame, ids: np.ndarray, columns: list[str], path: Path) -> np.ndarray:
    """(N, C) float64 of ``columns`` for ``ids`` in order; NaN where absent or null."""
    if frame["study_id"].is_duplicated().any():
        raise ValueError(f"{path}: duplicate study_id rows")
    keys = pl.DataFrame({"study_id": pl.Series(ids, dtype=pl.Int64)})
    cast = [pl.col(c).cast(pl.Float64) for c in columns]
    joined = keys.join(
        frame.select(pl.col("study_id").cast(pl.Int64), *cast), on="study_id", how="left"
    )
    return joined.select(columns).to_numpy().astype(np.float64).reshape(len(ids), len(columns))


def lab_variables(
    inputs: ProbeInputs, ids: np.ndarray, stat: str
) -> tuple[list[Variable], list[str]]:
    """Lab values (feature table) and flags (lab targets) of the selected lab targets.

    Returns the variables and notes on labs without a value column in the feature table.
    """
    selected = read_tsv(inputs.lab_targets_selected)["target"].to_list()
    manifest = read_tsv(inputs.lab_target_manifest)
    lab_of = dict(zip(manifest["target"].to_list(), manifest["lab"].to_list(), strict=True))
    unknown = [t for t in selected if t not in lab_of]
    if unknown:
        raise ValueError(f"{inputs.lab_target_manifest}: no row for selected targets {unknown[:5]}")
    features = pl.read_parquet(inputs.features)
    notes, values = [], []
    for lab in dict.fromkeys(lab_of[t] for t in selected):
        col = f"labvalues_{slug(lab).lower()}_{stat}"
        if col not in features.columns:
            notes.append(f"{lab}: no column {col} in {inputs.features.name}")
            continue
        v = _aligned(features, ids, [col], inputs.features)[:, 0]
        values.append(Variable("lab value", lab, "value", v))
    flags = _aligned(pl.read_parquet(inputs.lab_targets), ids, selected, inputs.lab_targets)
    out = values + [Variable("lab flag", t, "flag", flags[:, j]) for j, t in enumerate(selected)]
    return out, notes


def ground_truth_variables(path: Path, ids: np.ndarray) -> list[Variable]:
    """Latent physiology of the synthetic cohort (values, then flags)."""
    gt = pl.read_parquet(path)
    needed = [*GT_VALUES, *(c for e in GT_FLAGS.values() for c in e.meta.root_names())]
    missing = sorted({c for c in needed if c not in gt.columns})
    if missing:
        raise ValueError(f"{path}: ground-truth columns missing: {missing}")
    gt = gt.select("study_id", *GT_VALUES, *[e.alias(k) for k, e in GT_FLAGS.items()])
    arr = _aligned(gt, ids, [*GT_VALUES, *GT_FLAGS], path)
    if np.isnan(arr).all(axis=1).any():
        raise ValueError(f"{path}: {int(np.isnan(arr).all(axis=1).sum())} probe records missing")
    names = [*GT_VALUES, *GT_FLAGS]
    return [
        Variable("ground truth", n, "value" if n in GT_VALUES else "flag", arr[:, j])
        for j, n in enumerate(names)
    ]


def _parts(inputs: ProbeInputs, cfg: ProbeConfig) -> dict[str, np.ndarray]:
    parts = {p: read_ids(getattr(inputs, f"{p}_ids")) for p in ("train", "val", "test")}
    if cfg.max_train and len(parts["train"]) > cfg.max_train:
        rng = np.random.default_rng(cfg.seed)
        parts["train"] = np.sort(rng.permutation(parts["train"])[: cfg.max_train])
    return parts


def _standardised(x: np.ndarray, n_train: int) -> np.ndarray:
    mu, sd = x[:n_train].mean(axis=0), x[:n_train].std(axis=0)
    return (x - mu) / np.where(sd > 0, sd, 1.0)


def _probe_all(
    x: np.ndarray,
    variables: list[Variable],
    bounds: dict[str, slice],
    cfg: ProbeConfig,
    boot: tuple[int, int],
) -> list[ProbeScore]:
    scores = []
    for v in variables:
        split = Split(
            {p: x[s] for p, s in bounds.items()}, {p: v.values[s] for p, s in bounds.items()}
        )
        if v.kind == "value":
            scores.append(probe_value(split, cfg.ridge_alphas, *boot, cfg.min_records))
        else:
            scores.append(probe_flag(split, cfg.logistic_cs, *boot, cfg.min_records))
    return scores


@dataclass(frozen=True)
class ProbeSetup:
    """What every encoder is probed on: the records (train, then val, then test) and the
    variables aligned to them."""

    ids: np.ndarray
    bounds: dict[str, slice]
    variables: list[Variable]
    notes: list[str]


def probe_setup(inputs: ProbeInputs, cfg: ProbeConfig) -> ProbeSetup:
    """The records and variables of the probe (the same for every encoder)."""
    parts = _parts(inputs, cfg)
    ids = np.concatenate([parts["train"], parts["val"], parts["test"]])
    n_tr, n_va = len(parts["train"]), len(parts["val"])
    bounds = {
        "train": slice(0, n_tr),
        "val": slice(n_tr, n_tr + n_va),
        "test": slice(n_tr + n_va, None),
    }
    variables, notes = lab_variables(inputs, ids, cfg.lab_stat)
    if inputs.ground_truth is not None:
        variables += ground_truth_variables(Path(inputs.ground_truth), ids)
    log.info(
        "probing %d variables on %d train / %d val / %d test records",
        len(variables),
        n_tr,
        n_va,
        len(ids) - n_tr - n_va,
    )
    return ProbeSetup(ids, bounds, variables, notes)


def score_encoder(
    setup: ProbeSetup,
    store: ShardStore,
    name: str,
    source: Path | None,
    cfg: ProbeConfig,
    model_cfg: Mapping[str, object],
    settings: EmbedSettings,
    boot: tuple[int, int],
) -> EncoderScores:
    """Embed the records with encoder ``name`` (``source``: its model directory, None for
    the untrained one) and fit every variable's probe; ``boot``: (resamples, seed)."""
    start = time.perf_counter()
    with torch.no_grad():
        encoder = load_encoder(source, model_cfg, cfg.seed).eval()
        encoder.to(settings.device)
        x = embed_records(
            encoder,
            store,
            setup.ids,
            settings.crop_samples,
            settings.eval_crops,
            batch_size=cfg.batch_size,
            device=settings.device,
            desc=f"probe {name}",
        ).astype(np.float64)
    took = time.perf_counter() - start
    n_tr = setup.bounds["train"].stop
    # Small dense fits: threaded BLAS only adds contention (measured 8x slower on 2 cores).
    with threadpool_limits(1):
        scores = _probe_all(_standardised(x, n_tr), setup.variables, setup.bounds, cfg, boot)
    log.info(
        "%s: embedded %d records (dim %d) in %.1f s, probes in %.1f s",
        name,
        len(setup.ids),
        x.shape[1],
        took,
        time.perf_counter() - start - took,
    )
    return EncoderScores(name, tuple(setup.variables), tuple(scores), tuple(setup.notes))


def probe_one(
    inputs: ProbeInputs,
    name: str,
    source: Path | None,
    out: Path,
    cfg: ProbeConfig,
    model_cfg: Mapping[str, object],
    settings: EmbedSettings,
    *,
    n_bootstrap: int = 1000,
    bootstrap_seed: int = 0,
) -> EncoderScores:
    """Probe one encoder and write its scores to ``out`` (rule probe_encoder).

    Args: as :func:`run_probe`, for encoder ``name`` (``source``: its model directory, or
    None for the untrained encoder).
    """
    from pipeline.data.ecg_store import ShardStore

    setup = probe_setup(inputs, cfg)
    boot = (n_bootstrap, bootstrap_seed)
    result = score_encoder(
        setup, ShardStore(inputs.shard_index), name, source, cfg, model_cfg, settings, boot
    )
    write_scores(out, result)
    return result


def combine(
    paths: Mapping[str, Path], outputs: ProbeOutputs, *, n_bootstrap: int = 1000
) -> pl.DataFrame:
    """Write probe.md, probe.csv and the heatmap from the per-encoder score files
    (:func:`probe_one`; encoder name -> file, in the tables' column order)."""
    results = [read_scores(p) for p in paths.values()]
    same_variables(results, list(paths.values()))
    for (name, path), result in zip(paths.items(), results, strict=True):
        if result.encoder != name:
            raise ValueError(f"{path}: scores of encoder {result.encoder!r}, expected {name!r}")
    scores = {r.encoder: list(r.scores) for r in results}
    first = results[0]
    return write_outputs(
        list(first.variables), scores, list(first.notes), outputs, n_bootstrap=n_bootstrap
    )


def run_probe(
    inputs: ProbeInputs,
    encoders: Mapping[str, Path | None],
    outputs: ProbeOutputs,
    cfg: ProbeConfig,
    model_cfg: Mapping[str, object],
    settings: EmbedSettings,
    *,
    n_bootstrap: int = 1000,
    bootstrap_seed: int = 0,
) -> pl.DataFrame:
    """Probe every encoder in turn, in one process, and write probe.md, probe.csv and the
    heatmap (the workflow runs :func:`probe_one` per encoder, then :func:`combine`).

    Args:
        inputs: Shards, id lists, feature table, lab targets (+ ground truth when enabled).
        encoders: Name -> model directory, or None for the untrained encoder (model sizes
            from ``model_cfg``, weights from ``cfg.seed``).
        outputs: Where to write.
        cfg: The ``probe`` section.
        model_cfg: The ``model`` section.
        settings: Crops and device for embedding.
        n_bootstrap, bootstrap_seed: Test-record resamples (the ``evaluate`` settings).

    Returns:
        The long score table written to probe.csv.
    """
    from pipeline.data.ecg_store import ShardStore

    setup = probe_setup(inputs, cfg)
    store = ShardStore(inputs.shard_index)
    boot = (n_bootstrap, bootstrap_seed)
    scores = {
        name: list(score_encoder(setup, store, name, src, cfg, model_cfg, settings, boot).scores)
        for name, src in encoders.items()
    }
    return write_outputs(setup.variables, scores, setup.notes, outputs, n_bootstrap=n_bootstrap)
