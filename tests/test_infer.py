"""``ecg-explain``: batch scoring, resume, figures, the exported model and its directory."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tomllib

from pipeline.infer.bundle import load_bundle, make_scorer
from pipeline.infer.card import CardInputs
from pipeline.infer.cli import main
from pipeline.infer.explain import explain_records
from pipeline.infer.export import export_model_dir
from pipeline.infer.predict import PredictConfig, predict_records
from pipeline.infer.records import expand_inputs, load_batch, read_record_list
from pipeline.mimic_schema import LEADS
from tests.conftest import REPO
from tests.infer_fixtures import DX, LABS, write_model_dir
from tests.test_ecg_reader import foreign_export
from tests.wfdb_fixtures import ecg_digital, write_record


@dataclass(frozen=True)
class World:
    root: Path
    model: Path
    records: list[Path]  # 500 Hz MIMIC-format records
    foreign: Path  # records[0] as a 1000 Hz respelled export with 3 extra channels
    no_v3: Path
    broken: Path  # truncated .dat


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("infer")
    model = write_model_dir(root)
    rng = np.random.default_rng(0)
    signals = [ecg_digital(rng) for _ in range(20)]
    records = []
    for k, d in enumerate(signals):
        rel = write_record(root / "ecg", 10000000 + k, 40000000 + k, d)
        records.append(root / "ecg" / rel)
    foreign = foreign_export(root / "muse", signals[0])
    keep = [i for i, n in enumerate(LEADS) if n != "V3"]
    rel = write_record(
        root / "bad", 1, 42000000, signals[1][:, keep], leads=[LEADS[i] for i in keep]
    )
    broken = root / "trunc" / "broken"
    broken.parent.mkdir()
    broken.with_suffix(".hea").write_text(
        records[2].with_suffix(".hea").read_text().replace(records[2].name, "broken")
    )
    broken.with_suffix(".dat").write_bytes(records[2].with_suffix(".dat").read_bytes()[:4000])
    return World(root, model, records, foreign, root / "bad" / rel, broken)


def test_foreign_export_gives_the_same_diagnoses_and_bad_records_are_named(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    paths = [world.records[0], world.foreign, world.no_v3, f"{world.records[3]}.hea", world.broken]
    assert main(["predict", "--model", str(world.model), "--out", str(out), *map(str, paths)]) == 0
    t = pl.read_parquet(out)
    assert t["record"].to_list() == list(map(str, paths))  # the user's keys, in order
    assert t.columns[:4] == ["record", "error", "warning", "derived_leads"]
    assert t.columns[4:] == [f"dx_{c}" for c in DX] + [f"lab_{t}" for t in LABS]
    probs = t.drop("record", "error", "warning", "derived_leads").to_numpy()
    # 1000 Hz, AVR/AVL/AVF + lower case, 3 extra channels vs the MIMIC original: the same
    # ranking, probabilities equal to the resampling difference (measured < 2e-3)
    assert np.abs(probs[0] - probs[1]).max() < 5e-3
    assert np.argsort(-probs[0][: len(DX)]).tolist() == np.argsort(-probs[1][: len(DX)]).tolist()
    errors = t["error"].to_list()
    assert errors[0] is None and errors[1] is None and errors[3] is None
    assert errors[2].startswith("not_12_lead") and "missing V3" in errors[2]
    assert errors[4].startswith("truncated_signal")
    assert np.isnan(probs[[2, 4]]).all() and np.isfinite(probs[[0, 1, 3]]).all()


def test_predict_matches_explain_and_reads_a_record_list(world: World, tmp_path: Path) -> None:
    (tmp_path / "list.csv").write_text(
        "path,other\n" + "".join(f"{p.relative_to(world.root)},x\n" for p in world.records[:5])
    )
    refs = read_record_list(tmp_path / "list.csv", root=world.root)
    out = tmp_path / "s.csv"
    bundle = load_bundle(world.model)
    predict_records(refs, bundle, make_scorer(bundle), out, PredictConfig(2, 3, embedding=True))
    t = pl.read_csv(out)
    assert t["record"].to_list() == [str(p.relative_to(world.root)) for p in world.records[:5]]
    assert "other" not in t.columns and t.select(pl.col("^emb_.*$")).width == 16
    ex = explain_records(world.model, world.records[:5], {"I48": "AF"})
    for row, e in zip(t.iter_rows(named=True), ex, strict=True):
        assert [row[f"dx_{f.label}"] for f in e.diagnoses] == pytest.approx(
            [f.probability for f in e.diagnoses], abs=1e-6
        )
    assert any(f.name == "AF" for f in ex[0].diagnoses)
    with pytest.raises(ValueError, match="no column 'file'"):
        read_record_list(tmp_path / "list.csv", column="file")


def test_directory_input_and_interrupted_run_resumes(world: World, tmp_path: Path) -> None:
    refs = expand_inputs([world.records[0].parents[3]])  # .../ecg/files/p1000: all 20
    assert len(refs) == 20
    bundle = load_bundle(world.model)
    scorer = make_scorer(bundle)
    cfg = PredictConfig(batch_size=4, chunk_records=8)
    calls = []

    def dying(x: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(x))
        if len(calls) > 3:  # killed in the second chunk
            raise KeyboardInterrupt
        return scorer(x)

    out = tmp_path / "scores.parquet"
    with pytest.raises(KeyboardInterrupt):
        predict_records(refs, bundle, dying, out, cfg)
    assert not out.exists()
    parts = tmp_path / ".scores.parquet.parts"
    assert sorted(p.name for p in parts.glob("part_*")) == ["part_000000.parquet"]
    calls.clear()
    summary = predict_records(refs, bundle, dying, out, cfg)
    assert summary.n_chunks_resumed == 1 and sum(calls) == 12 and not parts.exists()
    fresh = predict_records(refs, bundle, scorer, tmp_path / "fresh.parquet", cfg)
    assert fresh.n_chunks_resumed == 0
    assert pl.read_parquet(out).equals(pl.read_parquet(tmp_path / "fresh.parquet"))


def test_plot_writes_a_figure_per_record(world: World, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    args = ["predict", "--model", str(world.model), "--out", str(out), "--plot", str(tmp_path)]
    assert main([*args, str(world.records[0]), str(world.broken)]) == 0
    png = tmp_path / f"{world.records[0].name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert len(list(tmp_path.glob("*.png"))) == 1  # the unreadable record has none


def test_exported_model_equals_torch_on_20_records(world: World, tmp_path: Path) -> None:
    bundle = load_bundle(world.model)
    x = load_batch(expand_inputs(world.records), bundle.prep).x  # (20, 12, 1000)
    table1 = {"rows": [{"approach": "Three-stage method", "inference_requires": "ECG",
                        "diagnoses": {"auroc": 0.8, "ci_low": 0.75, "ci_high": 0.85},
                        "labs": None}]}  # fmt: skip
    card = CardInputs("test fixture", {"train": 64, "val": 24, "test": 24}, table1)
    out = tmp_path / "export"
    report = export_model_dir(
        world.model, out, world.root / "label_manifest.tsv",
        world.root / "lab_targets_selected.tsv", x, card,
    )  # fmt: skip
    assert report.n_records == 20 and report.worst < 1e-5
    files = {p.name for p in out.iterdir()}
    assert {"model.onnx", "model.json", "model.safetensors", "labels.tsv"} <= files
    assert {"lab_targets.tsv", "MODEL_CARD.md", "export.json"} <= files
    assert json.loads((out / "model.json").read_text())["preprocessing"]["fs"] == 100
    text = (out / "MODEL_CARD.md").read_text()
    assert "Associations, not causes" in text and "0.800 (0.750-0.850)" in text
    assert "Heart failure" in text
    assert "## Training recipe" in text and "the same tuning budget" in text
    # onnxruntime alone (no torch, no training code) in a fresh interpreter
    code = (
        "import sys, numpy as np, onnxruntime as ort; x = np.load(sys.argv[1]); "
        "s = ort.InferenceSession(sys.argv[2], providers=['CPUExecutionProvider']); "
        "np.save(sys.argv[3], s.run(['diagnoses'], {'ecg': x})[0]); "
        "assert 'torch' not in sys.modules and 'pipeline' not in sys.modules"
    )
    np.save(tmp_path / "x.npy", x)
    cmd = [sys.executable, "-c", code, str(tmp_path / "x.npy"), str(out / "model.onnx")]
    subprocess.run([*cmd, str(tmp_path / "dx.npy")], check=True, cwd=tmp_path)
    torch_dx = make_scorer(bundle, "torch")(x)["diagnoses"]
    assert np.abs(np.load(tmp_path / "dx.npy") - torch_dx).max() < 1e-5
    # the CLI on the export, ONNX backend, names from the exported labels.tsv
    ex = explain_records(out, world.records[:2], backend="onnx")
    assert {f.name for f in ex[0].diagnoses} >= {"Heart failure"}


def test_console_entry_point_and_module_shims(world: World, tmp_path: Path) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ecg-explain"] == "pipeline.infer.cli:main"
    out = tmp_path / "e.json"
    # the former module name still works (one interpreter start: torch imports are slow)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.explain", "--model", str(world.model),
         str(world.records[0]), "--json", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "predicted lab abnormalities" in proc.stdout
    assert len(json.loads(out.read_text())[0]["diagnoses"]) == len(DX)
