"""Format readers: each against a file its own library or its published layout produced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from pipeline.data.formats import ArraySpec, array_items, detect, read_source
from pipeline.data.leads import canonical_lead
from pipeline.data.wfdb_record import Record, RecordError
from pipeline.mimic_schema import LEADS
from tests.ecg_format_fixtures import (
    CODE15_LEADS,
    code15,
    dipole_ecg,
    quantised,
    write_aecg,
    write_dicom,
    write_edf,
    write_hdf5,
    write_muse,
)

MIN_FS = 100


def read(path: Path, item: int | None = None, spec: ArraySpec | None = None) -> Record:
    return read_source(path, detect(path), 500, 5000, MIN_FS, item, spec)


@pytest.fixture(scope="module")
def mv() -> np.ndarray:
    return dipole_ecg(np.random.default_rng(7))  # (12, 5000) mV


@pytest.mark.parametrize(
    ("name", "lead"),
    [("Lead I (Einthoven)", "I"), ("Lead III (Einthoven)", "III"), ("Lead aVR", "aVR"),
     ("MDC_ECG_LEAD_AVF", "aVF"), ("MDC_ECG_LEAD_V2", "V2"), ("MDC_ECG_LEAD_V7", None)],
)  # fmt: skip
def test_coded_lead_labels(name: str, lead: str | None) -> None:
    assert canonical_lead(name) == lead


def test_dicom_written_with_pydicom_reads_back_the_rhythm_in_mv(
    tmp_path: Path, mv: np.ndarray
) -> None:
    path = write_dicom(tmp_path / "ecg.dcm", mv, uv_per_bit=2.5)  # MEDIAN BEAT group first
    assert detect(path) == "dicom"
    rec = read(path)
    assert rec.fs == 500 and rec.signal.shape == (12, 5000) and rec.derived == ()
    np.testing.assert_allclose(rec.signal, mv, atol=0.0025 / 2 + 1e-6)  # half a 2.5 uV step
    np.testing.assert_allclose(rec.signal, quantised(mv, 0.0025), atol=1e-5)


def test_pydicom_bundled_waveform_ecg_is_read_in_lead_order() -> None:
    path = Path(get_testdata_file("waveform_ecg.dcm"))  # ships with pydicom: a real export
    ds = pydicom.dcmread(path)
    rec = read(path)
    assert rec.fs == 1000 and rec.signal.shape == (12, 10000)  # RHYTHM, not MEDIAN BEAT
    meanings = [
        c.ChannelSourceSequence[0].CodeMeaning
        for c in ds.WaveformSequence[0].ChannelDefinitionSequence
    ]
    uv = ds.waveform_array(0)  # (T, 12) in the file's order, uV (sensitivity 1.25 uV)
    for k, meaning in enumerate(meanings):
        np.testing.assert_allclose(
            rec.signal[LEADS.index(canonical_lead(meaning))], uv[:, k] / 1000, atol=1e-6
        )


def test_dicom_without_a_10_s_group_is_refused_naming_the_groups(
    tmp_path: Path, mv: np.ndarray
) -> None:
    path = write_dicom(tmp_path / "short.dcm", mv[:, :1250])  # 2.5 s strip + median beat
    with pytest.raises(
        RecordError, match=r"^length: no 10 s waveform .*MEDIAN BEAT 1.2 s, RHYTHM 2.5 s"
    ):
        read(path)


def test_muse_8_leads_get_the_4_derived_limb_leads(tmp_path: Path, mv: np.ndarray) -> None:
    path = write_muse(tmp_path / "muse.xml", mv)  # I, II, V1-V6 as MUSE stores them
    assert detect(path) == "muse"
    rec = read(path)
    assert rec.derived == ("III", "aVR", "aVL", "aVF")
    step = 4.88e-3  # mV per bit
    # stored leads within half a bit; derived ones within the bits of I and II they combine
    np.testing.assert_allclose(rec.signal, mv, atol=1.5 * step)
    stored = [LEADS.index(name) for name in ("I", "II", "V1", "V6")]
    np.testing.assert_allclose(rec.signal[stored], mv[stored], atol=step / 2 + 1e-6)


def test_muse_with_12_leads_derives_nothing(tmp_path: Path, mv: np.ndarray) -> None:
    rec = read(write_muse(tmp_path / "muse12.xml", mv, leads=LEADS))
    assert rec.derived == ()
    np.testing.assert_allclose(rec.signal, mv, atol=4.88e-3 / 2 + 1e-6)


def test_muse_exported_as_utf16_is_recognised(tmp_path: Path, mv: np.ndarray) -> None:
    text = write_muse(tmp_path / "m.xml", mv).read_text(encoding="iso-8859-1")
    path = tmp_path / "utf16.xml"
    path.write_text(text.replace('encoding="ISO-8859-1"', 'encoding="UTF-16"'), encoding="utf-16")
    assert detect(path) == "muse"
    np.testing.assert_allclose(read(path).signal, mv, atol=1.5 * 4.88e-3)


def test_muse_without_rhythm_strip_is_refused_naming_it(tmp_path: Path, mv: np.ndarray) -> None:
    path = write_muse(tmp_path / "median_only.xml", mv, rhythm=False)
    with pytest.raises(
        RecordError, match=r"^rhythm_missing: no Waveform of WaveformType Rhythm \(found: Median\)"
    ):
        read(path)


def test_aecg_rhythm_series_in_mv(tmp_path: Path, mv: np.ndarray) -> None:
    path = write_aecg(tmp_path / "aecg.xml", mv, uv_per_digit=5.0)
    assert detect(path) == "aecg"
    rec = read(path)
    assert rec.fs == 500 and rec.derived == ()
    np.testing.assert_allclose(rec.signal, quantised(mv, 0.005), atol=1e-5)


def test_edf_written_with_edfio_round_trips(tmp_path: Path, mv: np.ndarray) -> None:
    path = write_edf(tmp_path / "ecg.edf", mv)
    assert detect(path) == "edf"
    rec = read(path)
    # edfio maps the physical range of each signal onto 16 bits: step = range / 65535
    step = np.ptp(mv, axis=1, keepdims=True) / 65535
    assert (np.abs(rec.signal - mv) <= step).all()


def test_hdf5_code15_layout_gives_one_record_per_exam_id(tmp_path: Path, mv: np.ndarray) -> None:
    path = write_hdf5(tmp_path / "exams.hdf5", [mv, 0.5 * mv], [1234, 98])
    assert array_items(path, "hdf5") == [("#1234", 0), ("#98", 1)]
    spec = ArraySpec(400.0, CODE15_LEADS)
    rec = read(path, 1, spec)
    assert rec.fs == 400 and rec.signal.shape == (12, 4000)  # the centred 10 s of 4096
    expected = code15(0.5 * mv)[48:-48].T  # (12, 4000) in CODE-15 order
    order = [CODE15_LEADS.index(n) for n in ("DI", "DII", "DIII", "AVR", "AVF", "AVL")]
    np.testing.assert_allclose(rec.signal[:6], expected[order], atol=1e-6)
    with pytest.raises(RecordError, match=r"^array_options: .*give --fs and --leads"):
        read(path, 0, ArraySpec())


def test_npy_and_npz_with_leads_first_or_last(tmp_path: Path, mv: np.ndarray) -> None:
    np.save(tmp_path / "one.npy", mv.astype(np.float32))  # (12, T)
    np.savez(tmp_path / "many.npz", tracings=np.stack([mv.T, mv.T]), exam_id=np.array([5, 6]))
    spec = ArraySpec(500.0, LEADS, units="mV")
    assert array_items(tmp_path / "many.npz", "npz") == [("#5", 0), ("#6", 1)]
    for rec in (read(tmp_path / "one.npy", None, spec), read(tmp_path / "many.npz", 1, spec)):
        np.testing.assert_allclose(rec.signal, mv, atol=1e-6)
    rec = read(tmp_path / "one.npy", None, ArraySpec(500.0, LEADS, units="uV"))
    np.testing.assert_allclose(rec.signal, mv / 1000, atol=1e-6)


@pytest.mark.parametrize(
    ("content", "name", "reason"),
    [(b"hello", "notes.txt", "^unknown_format: .txt"),
     (b"<RestingECG><Waveform>", "cut.xml", "^read_error: not valid XML"),
     (b"<other/>", "other.xml", "^unknown_format: .xml"),
     (b"0       broken", "bad.edf", "^read_error: not a readable EDF file"),
     (b"\x89HDF\r\n\x1a\nxx", "bad.h5", "^read_error: hdf5 file")],
)  # fmt: skip
def test_unreadable_files_get_a_one_line_reason(
    tmp_path: Path, content: bytes, name: str, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecordError, match=reason) as err:
        read(path, None, ArraySpec(400.0, LEADS))
    assert "\n" not in str(err.value)
