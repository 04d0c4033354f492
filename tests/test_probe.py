"""The probe stage on a small synthetic cohort: what the ECG encodes scores far above the rest.

The cohort's ECG carries potassium (T amplitude and width) and heart rate, and nothing of
sodium (docs/synthetic_cohort.md); an untrained S4 encoder with a fitted linear probe
already separates them, so the test needs no training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import save_file

from pipeline.data.ecg_store import read_record, resample
from pipeline.evaluation.probe import (
    EmbedSettings,
    ProbeConfig,
    ProbeInputs,
    combine,
    probe_one,
    run_probe,
)
from pipeline.evaluation.probe_fit import Split, probe_flag, probe_value
from pipeline.evaluation.probe_report import ProbeOutputs
from pipeline.mimic_schema import FS_HZ, N_SAMPLES
from pipeline.models import build_ecg_encoder
from tests.synth_helpers import make_cohort
from tests.train_fixtures import _write_shards, model_cfg

N_SUBJECTS = 300  # ~1,150 ECGs: enough training records for stable probes
FS = 100


def _shard(root: Path) -> tuple[Path, np.ndarray]:
    records = pl.read_csv(root / "mimic-iv-ecg/record_list.csv")
    ids, signals = [], []
    for sid, rel in records.select("study_id", "path").iter_rows():
        x = read_record(root / "mimic-iv-ecg" / rel, FS_HZ, N_SAMPLES).signal  # (12, 5000)
        x = np.clip(np.nan_to_num(x), -3, 3)
        signals.append(resample(x, FS_HZ, FS))
        ids.append(sid)
    order = np.argsort(ids)
    study_id = np.asarray(ids, dtype=np.int64)[order]
    return _write_shards(
        root / "shards", study_id, np.stack(signals)[order].astype(np.float16)
    ), study_id


def build_world(root: Path, n_subjects: int = N_SUBJECTS) -> ProbeInputs:
    """A synthetic cohort, sharded, split by patient, with lab values and flags from it."""
    make_cohort(root, n_subjects=n_subjects)
    index, study_id = _shard(root)
    gt = pl.read_parquet(root / "gt/latent.parquet").sort("study_id")
    rng = np.random.default_rng(1)
    # Patient-grouped parts, as the splits stage makes them.
    subjects = gt["subject_id"].unique().sort().to_numpy()
    part_of = dict(zip(subjects, rng.choice(3, len(subjects), p=[0.6, 0.15, 0.25]), strict=True))
    part = np.array([part_of[s] for s in gt["subject_id"].to_list()])
    for k, name in enumerate(("train", "val", "test")):
        pl.DataFrame({"study_id": gt["study_id"].to_numpy()[part == k]}).write_parquet(
            root / f"{name}_ids.parquet"
        )
    k, na = gt["potassium"].to_numpy(), gt["sodium"].to_numpy()
    measured = rng.random(len(k)) < 0.85  # labs are not drawn for every ECG

    def col(v: np.ndarray, dtype: type[pl.DataType] = pl.Float64) -> pl.Series:
        return pl.Series(np.where(measured, v, np.nan)).fill_nan(None).cast(dtype)

    pl.DataFrame(
        {
            "study_id": gt["study_id"],
            "labvalues_potassium_mean": col(k + rng.normal(0, 0.05, len(k))),
            "labvalues_sodium_mean": col(na),
        }
    ).write_parquet(root / "features.parquet")
    pl.DataFrame(
        {
            "study_id": gt["study_id"],
            "Potassium_high": col((k > 5.1).astype(float), pl.Int8),
            "Sodium_low": col((na < 135).astype(float), pl.Int8),
        }
    ).write_parquet(root / "lab_targets.parquet")
    (root / "selected.tsv").write_text("target\nPotassium_high\nSodium_low\n")
    (root / "manifest.tsv").write_text(
        "target\tlab\tfluid\tdirection\tthreshold\n"
        "Potassium_high\tPotassium\tBlood\thigh\t5.1\nSodium_low\tSodium\tBlood\tlow\t135\n"
    )
    assert set(study_id) == set(gt["study_id"].to_list())
    inputs = ProbeInputs(
        shard_index=index,
        train_ids=root / "train_ids.parquet",
        val_ids=root / "val_ids.parquet",
        test_ids=root / "test_ids.parquet",
        features=root / "features.parquet",
        lab_targets=root / "lab_targets.parquet",
        lab_targets_selected=root / "selected.tsv",
        lab_target_manifest=root / "manifest.tsv",
        ground_truth=root / "gt/latent.parquet",
    )
    return inputs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ProbeInputs]:
    root = tmp_path_factory.mktemp("probe")
    return root, build_world(root)


@pytest.fixture(scope="module")
def probed(world: tuple[Path, ProbeInputs]) -> tuple[Path, pl.DataFrame]:
    root, inputs = world
    outputs = ProbeOutputs(root / "out/probe.md", root / "out/probe.csv", root / "out/probe.png")
    frame = run_probe(
        inputs,
        {"random_init": None},
        outputs,
        ProbeConfig(seed=0, min_records=10),
        model_cfg(d_model=32, n_layers=1),
        EmbedSettings(crop_samples=250, eval_crops=4, device=torch.device("cpu")),
        n_bootstrap=200,
    )
    return root, frame


def _score(frame: pl.DataFrame, source: str, variable: str) -> dict:
    rows = frame.filter((pl.col("source") == source) & (pl.col("variable") == variable))
    assert rows.height == 1, (source, variable)
    return rows.row(0, named=True)


def test_encoded_variable_scores_far_above_unencoded(probed: tuple[Path, pl.DataFrame]) -> None:
    _, frame = probed
    k, na = _score(frame, "ground truth", "potassium"), _score(frame, "ground truth", "sodium")
    assert k["status"] == na["status"] == "ok"
    assert k["score"] > 0.35, k  # T amplitude carries potassium
    assert na["score"] < 0.15, na  # nothing in the ECG depends on sodium
    assert k["ci_low"] > na["ci_high"]  # the intervals do not even overlap
    # The same contrast through the feature table (what real MIMIC offers).
    lk, lna = _score(frame, "lab value", "Potassium"), _score(frame, "lab value", "Sodium")
    assert lk["score"] > lna["score"] + 0.25
    hr, hf = _score(frame, "ground truth", "heart_rate"), _score(frame, "ground truth", "af")
    assert hr["score"] > 0.3 and hf["score"] > 0.65


def test_outputs_name_every_encoder_and_variable(probed: tuple[Path, pl.DataFrame]) -> None:
    root, frame = probed
    md = (root / "out/probe.md").read_text()
    assert "untrained (random init)" in md and "| potassium |" in md
    assert "Potassium_high" in md and "Lab values from the feature table" in md
    assert (root / "out/probe.png").read_bytes()[:4] == b"\x89PNG"
    on_disk = pl.read_csv(root / "out/probe.csv")
    assert on_disk.height == frame.height == 2 + 2 + 17  # lab values, flags, ground truth
    ok = frame.filter(pl.col("status") == "ok")
    assert (ok["ci_low"] <= ok["ci_high"]).all()


def test_probe_fits_are_honest_on_noise() -> None:
    # Pure-noise embeddings: no probe may claim to find the variable.
    rng = np.random.default_rng(0)
    x = {p: rng.normal(size=(n, 8)) for p, n in (("train", 300), ("val", 100), ("test", 200))}
    y = {p: rng.normal(size=len(v)) for p, v in x.items()}
    value = probe_value(Split(x, y), (1.0, 100.0), 200, 0, 10)
    assert value.status == "ok" and value.estimate.point < 0.05 and value.estimate.low < 0
    flags = {p: (v > 0).astype(float) for p, v in y.items()}
    flag = probe_flag(Split(x, flags), (0.1, 1.0), 200, 0, 10)
    assert flag.status == "ok" and flag.estimate.low < 0.5 < flag.estimate.high
    y["test"][:] = np.nan
    assert probe_value(Split(x, y), (1.0,), 10, 0, 10).status.startswith("skipped")


def _stage1_dir(out: Path, cfg: dict, seed: int) -> Path:
    """An encoder directory as stage 1 writes it (its weights and model.json), here with
    the weights of another seed than the untrained encoder's."""
    torch.manual_seed(seed)
    encoder = build_ecg_encoder(cfg["ecg_encoder"])
    out.mkdir(parents=True)
    save_file(encoder.state_dict(), str(out / "encoder.safetensors"))
    (out / "model.json").write_text(json.dumps({"ecg_encoder": cfg["ecg_encoder"]}))
    return out


def test_per_encoder_jobs_combine_to_the_single_job_table(tmp_path: Path) -> None:
    # The workflow probes each encoder in a job of its own (probe_one, a score file each)
    # and combines the files (combine): the same probe.csv and probe.md, byte for byte, as
    # one job probing the encoders in turn (run_probe), paired differences included.
    inputs = build_world(tmp_path / "world", n_subjects=60)
    cfg, model = ProbeConfig(seed=0, min_records=10), model_cfg(d_model=16, n_layers=1)
    settings = EmbedSettings(crop_samples=250, eval_crops=2, device=torch.device("cpu"))
    encoders = {"random_init": None, "pretrain": _stage1_dir(tmp_path / "enc", model, seed=5)}

    def outputs(name: str) -> ProbeOutputs:
        return ProbeOutputs(*(tmp_path / name / f"probe.{e}" for e in ("md", "csv", "png")))

    single = run_probe(inputs, encoders, outputs("single"), cfg, model, settings, n_bootstrap=20)
    files = {name: tmp_path / "scores" / f"{name}.npz" for name in encoders}
    for name, source in encoders.items():
        probe_one(inputs, name, source, files[name], cfg, model, settings, n_bootstrap=20)
    combined = combine(files, outputs("jobs"), n_bootstrap=20)
    assert combined.equals(single)
    for ext in ("csv", "md"):
        assert (tmp_path / f"jobs/probe.{ext}").read_bytes() == (
            tmp_path / f"single/probe.{ext}"
        ).read_bytes()
    md = (tmp_path / "jobs/probe.md").read_text()
    assert "stage 1 (ECG vs tabular) - untrained (random init)" in md  # from the resamples
    assert not list((tmp_path / "scores").glob(".*"))  # no temporary file left behind
    # a file of another encoder under a name is refused, naming the file
    with pytest.raises(ValueError, match=r"random_init\.npz: scores of encoder 'random_init'"):
        combine({"pretrain": files["random_init"]}, outputs("bad"), n_bootstrap=20)
