"""``ecg-explain`` on what hospitals export: one recording, every format, the same answer."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.infer.cli import main
from tests.ecg_format_fixtures import (
    CODE15_LEADS,
    dipole_ecg,
    write_aecg,
    write_dicom,
    write_edf,
    write_hdf5,
    write_muse,
    write_wfdb,
)
from tests.infer_fixtures import DX, LABS, write_model_dir
from tests.wfdb_fixtures import write_record

META = ["record", "error", "warning", "derived_leads"]
ARRAYS = ["--fs", "400", "--leads", ",".join(CODE15_LEADS)]  # CODE-15's rate and order


@dataclass(frozen=True)
class Exports:
    model: Path
    files: dict[str, Path]  # format -> the same recording in that format
    other: np.ndarray  # a second recording (the HDF5 file's second exam)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    root = tmp_path_factory.mktemp("formats")
    model = write_model_dir(root)
    rng = np.random.default_rng(11)
    mv, other = dipole_ecg(rng), dipole_ecg(rng)
    d = root / "exports"
    d.mkdir()
    files = {
        "wfdb": write_wfdb(d / "wfdb", mv),
        "dicom": write_dicom(d / "ecg.dcm", mv),
        "muse": write_muse(d / "muse.xml", mv),  # I, II, V1-V6 only, as MUSE stores them
        "aecg": write_aecg(d / "aecg.xml", mv),
        "edf": write_edf(d / "ecg.edf", mv),
        "hdf5": write_hdf5(d / "exams.hdf5", [mv, other], [1001, 1002]),
    }
    return Exports(model, files, other)


def _predict(model: Path, out: Path, inputs: list[str], *extra: str) -> pl.DataFrame:
    main(["predict", "--model", str(model), "--out", str(out), *extra, *inputs])
    return pl.read_parquet(out)


def _probs(t: pl.DataFrame) -> np.ndarray:
    return t.drop(META).to_numpy()


def test_one_recording_in_every_format_gives_the_same_top_diagnoses(
    exports: Exports, tmp_path: Path
) -> None:
    f = exports.files
    inputs = [str(f[k]) for k in ("wfdb", "dicom", "muse", "aecg", "edf", "hdf5")]
    t = _predict(exports.model, tmp_path / "s.parquet", inputs, *ARRAYS)
    assert t["record"].to_list() == [*inputs[:5], f"{f['hdf5']}#1001", f"{f['hdf5']}#1002"]
    assert t.columns[:4] == META and t.columns[4:] == [f"dx_{c}" for c in DX] + [
        f"lab_{x}" for x in LABS
    ]
    assert t["error"].null_count() == t.height and t["warning"].null_count() == t.height
    assert t["derived_leads"].to_list() == [None, None, "III,aVR,aVL,aVF", None, None, None, None]
    p = _probs(t)
    wfdb, same = p[0], p[1:6]  # the HDF5 file's first exam is the recording
    # differences: each format's quantisation (1.25-5 uV), MUSE's derived leads, EDF's
    # 16-bit range, CODE-15's 400 Hz (500 -> 400 -> 100 Hz); the test_infer tolerance
    assert np.abs(same - wfdb).max() < 5e-3
    top = np.argsort(-wfdb[: len(DX)])[:5].tolist()
    for row in same:
        assert np.argsort(-row[: len(DX)])[:5].tolist() == top
    assert np.abs(p[6] - wfdb).max() > 0  # the second exam is another recording


def test_directory_of_mixed_formats_and_unreadable_files(exports: Exports, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(exports.files["wfdb"].parent, mixed / "wfdb")
    for k in ("dicom", "muse", "aecg", "edf", "hdf5"):
        shutil.copy(exports.files[k], mixed / exports.files[k].name)
    mv = dipole_ecg(np.random.default_rng(5))
    write_muse(mixed / "median_only.xml", mv, rhythm=False)
    (mixed / "notes.txt").write_text("exported by the ECG cart\n")
    (mixed / "cut.dcm").write_bytes(exports.files["dicom"].read_bytes()[:400])
    np.save(mixed / "short.npy", mv[:, :2000].T)  # 4 s at 500 Hz: not a 10 s strip
    t = _predict(exports.model, tmp_path / "s.parquet", [str(mixed)], *ARRAYS)
    reasons = {Path(r).name: e for r, e in zip(t["record"], t["error"], strict=True)}
    assert t.height == 11  # 5 single files + the WFDB record + 2 exams + 3 refused
    assert reasons["median_only.xml"].startswith(
        "rhythm_missing: no Waveform of WaveformType Rhythm"
    )
    assert reasons["notes.txt"].startswith("unknown_format: .txt")
    assert reasons["cut.dcm"].startswith("read_error")
    assert reasons["short.npy"].startswith("length: 2000 samples at 400 Hz")
    scored = t.filter(pl.col("error").is_null())
    assert scored.height == 7 and np.isfinite(_probs(scored)).all()
    assert np.isnan(_probs(t.filter(pl.col("error").is_not_null()))).all()


def test_explain_says_which_leads_are_derived_and_warns_on_a_5x_header_gain(
    exports: Exports, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the GE MUSE -> WFDB converter's mistake: samples at 1,000 per mV, header 200 adu/mV
    mv = dipole_ecg(np.random.default_rng(2))
    rel = write_record(tmp_path, 10000002, 40000002, np.round(mv.T * 1000).astype(np.int16))
    wrong = tmp_path / rel
    args = ["explain", "--model", str(exports.model), str(exports.files["muse"]), str(wrong)]
    assert main(args) == 0
    out = capsys.readouterr().out
    muse, gain = out.split(f"{wrong}:")
    assert "derived leads (from I and II): III, aVR, aVL, aVF" in muse
    assert "plausibility warning" not in muse
    # peaks 5x too large: leads beyond 5 mV (amplitude_high) and QRS beyond the clip
    lines = [ln for ln in gain.splitlines() if "plausibility warning" in ln]
    assert lines and all("likely units or gain" in ln for ln in lines)
    assert {ln.split(": ")[1] for ln in lines} <= {"amplitude_high", "clipped"}
    t = _predict(exports.model, tmp_path / "w.parquet", [str(wrong)])
    assert "likely units or gain" in t["warning"][0]
