"""A model directory is checked before it scores: hashes, manifests, preprocessing, modes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.infer.bundle import BundleError, load_bundle, make_scorer
from pipeline.infer.card import CardInputs
from pipeline.infer.cli import main
from pipeline.infer.export import export_model_dir
from pipeline.infer.predict import PredictConfig, predict_records
from pipeline.infer.records import expand_inputs
from pipeline.infer.verify import CHECKSUM_FILE, write_checksums
from tests.infer_fixtures import write_model_dir
from tests.wfdb_fixtures import ecg_digital, write_record

TABLE1 = {"rows": [{"approach": "Three-stage method", "inference_requires": "ECG",
                    "diagnoses": {"auroc": 0.8, "ci_low": 0.75, "ci_high": 0.85},
                    "labs": None}]}  # fmt: skip


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """(training-style model dir, its export written under umask 022, 4 WFDB records)."""
    root = tmp_path_factory.mktemp("bundle")
    old = os.umask(0o022)
    try:
        model = write_model_dir(root)
        x = np.random.default_rng(0).normal(0, 0.3, (2, 12, 1000)).astype(np.float32)
        card = CardInputs("test fixture", {"train": 8, "val": 4, "test": 4}, TABLE1)
        export = root / "export"
        export_model_dir(
            model, export, root / "label_manifest.tsv", root / "lab_targets_selected.tsv",
            x, card,
        )  # fmt: skip
    finally:
        os.umask(old)
    rng = np.random.default_rng(1)
    records = [
        root / "ecg" / write_record(root / "ecg", 1, 50 + k, ecg_digital(rng)) for k in range(4)
    ]
    return model, export, records


def edited(src: Path, tmp_path: Path, edit: Callable[[Path], None], resign: bool = False) -> Path:
    """A copy of ``src`` with ``edit`` applied (and SHA256SUMS rewritten with ``resign``)."""
    out = shutil.copytree(src, tmp_path / src.name)
    edit(out)
    if resign:  # a consistent tamperer: the hashes alone would not catch it
        write_checksums(out)
    return out


def set_prep(**values: int) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        meta = json.loads((d / "model.json").read_text())
        meta["preprocessing"].update(values)
        (d / "model.json").write_text(json.dumps(meta, indent=2))

    return edit


def refused(model_dir: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """The CLI's one-line refusal (exit status 2, no traceback)."""
    record = str(Path(__file__))  # never read: the model is refused first
    assert main(["explain", "--model", str(model_dir), *extra, record]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ecg-explain: model refused: ") and "\n" not in err
    assert "Traceback" not in err
    return err


def test_export_lists_every_file_and_modes_follow_the_umask(world, tmp_path, umask_022) -> None:
    _, export, _ = world
    lines = (export / CHECKSUM_FILE).read_text().splitlines()
    listed = dict(reversed(line.split("  ")) for line in lines)
    files = {p.name for p in export.iterdir()} - {CHECKSUM_FILE}
    assert set(listed) == files >= {"model.safetensors", "model.json", "model.onnx", "labels.tsv"}
    for name, digest in listed.items():
        assert hashlib.sha256((export / name).read_bytes()).hexdigest() == digest
    assert {oct(p.stat().st_mode & 0o777) for p in export.iterdir()} == {"0o644"}
    assert oct(export.stat().st_mode & 0o777) == "0o755"
    os.umask(0o027)
    trained = write_model_dir(tmp_path)  # training's save_weights
    assert oct((trained / "model.safetensors").stat().st_mode & 0o777) == "0o640"


@pytest.mark.parametrize(
    "values",
    [{"fs": 50, "n_samples": 500, "crop_samples": 125}, {"crop_samples": 200}, {"fs": 250}],
    ids=["consistent", "crop", "fs"],
)
def test_edited_model_json_is_refused_naming_file_or_key(world, tmp_path, capsys, values) -> None:
    model, export, _ = world
    err = refused(edited(export, tmp_path / "e", set_prep(**values)), capsys)
    assert "model.json: SHA-256 differs from" in err and "--forcerun export_model" in err
    if "fs" in values and "n_samples" not in values:  # inconsistent in itself
        err = refused(edited(model, tmp_path / "m", set_prep(**values)), capsys)
        assert "model.json preprocessing: fs 250 Hz x 10 s" in err
        assert "2500 samples, but n_samples is 1000" in err
    if "n_samples" in values:  # rewritten hashes too: the ONNX graph still disagrees
        d = edited(export, tmp_path / "r", set_prep(**values), resign=True)
        err = refused(d, capsys, "--backend", "onnx")
        assert "model.onnx: 'ecg' has shape ['batch', 12, 1000]" in err
        assert "model.json says (batch, 12, 500)" in err


def _short(d: Path) -> None:
    table = pl.read_csv(d / "labels.tsv", separator="\t", infer_schema=False)
    table.head(len(table) - 1).write_csv(d / "labels.tsv", separator="\t")


def _swapped(d: Path) -> None:
    table = pl.read_csv(d / "labels.tsv", separator="\t", infer_schema=False)
    table[[1, 0, *range(2, len(table))]].write_csv(d / "labels.tsv", separator="\t")


def test_labels_tsv_that_disagrees_with_model_json_is_refused(world, tmp_path, capsys) -> None:
    _, export, _ = world
    assert "labels.tsv: SHA-256 differs" in refused(edited(export, tmp_path / "a", _short), capsys)
    err = refused(edited(export, tmp_path / "s", _short, resign=True), capsys)
    assert "labels.tsv: 3 row(s), model.json heads.diagnosis_head.labels has 4" in err
    err = refused(edited(export, tmp_path / "w", _swapped, resign=True), capsys)
    assert "labels.tsv: row 1 is 'I50', model.json heads.diagnosis_head.labels[0] is 'I48'" in err


def test_missing_or_tampered_weights_and_missing_checksums_are_refused(
    world, tmp_path, capsys
) -> None:
    model, export, _ = world

    def flip(d: Path) -> None:
        w = bytearray((d / "model.safetensors").read_bytes())
        w[-3] ^= 0x01  # one bit of one weight
        (d / "model.safetensors").write_bytes(bytes(w))

    err = refused(edited(export, tmp_path / "f", flip), capsys)
    assert "model.safetensors: SHA-256 differs from" in err
    gone = edited(export, tmp_path / "g", lambda d: (d / "model.safetensors").unlink())
    assert f"{gone / 'model.safetensors'} not found (listed in" in refused(gone, capsys)
    trained = edited(model, tmp_path / "t", lambda d: (d / "model.safetensors").unlink())
    assert f"{trained / 'model.safetensors'} not found" in refused(trained, capsys)
    legacy = edited(export, tmp_path / "l", lambda d: (d / CHECKSUM_FILE).unlink())
    err = refused(legacy, capsys)
    assert "SHA256SUMS missing (exported by an earlier version" in err
    with pytest.raises(BundleError):  # the Python interface refuses the same way
        load_bundle(legacy)
    load_bundle(export)  # the intact export passes


def test_parts_scored_by_torch_are_rescored_not_reused_by_onnx(world, tmp_path) -> None:
    _, export, records = world
    bundle, refs = load_bundle(export), expand_inputs(records)
    torch_scorer = make_scorer(bundle, "torch")

    calls: list[int] = []

    def dying(x: np.ndarray) -> dict[str, np.ndarray]:
        if calls:  # killed in the second chunk
            raise KeyboardInterrupt
        calls.append(len(x))
        return torch_scorer(x)

    out = tmp_path / "scores.parquet"
    with pytest.raises(KeyboardInterrupt):
        predict_records(refs, bundle, dying, out, PredictConfig(2, 2, backend="torch"))
    assert (tmp_path / ".scores.parquet.parts" / "part_000000.parquet").is_file()
    onnx = PredictConfig(2, 2, backend="onnx")
    summary = predict_records(refs, bundle, make_scorer(bundle, "onnx"), out, onnx)
    assert summary.n_chunks_resumed == 0 and summary.n_scored == 4
    fresh = predict_records(refs, bundle, make_scorer(bundle, "onnx"), tmp_path / "f.parquet", onnx)
    assert pl.read_parquet(out).equals(pl.read_parquet(fresh.out))  # all ONNX, none torch
