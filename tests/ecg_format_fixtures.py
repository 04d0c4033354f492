"""One synthetic 12-lead recording written in every format ``ecg-explain`` reads.

:func:`dipole_ecg` builds a physiological recording (a rotating heart dipole seen by the
limb and chest electrodes, so Einthoven's and Goldberger's laws hold); the writers store
it as each format's own library or published layout does:

* WFDB with ``wfdb.wrsamp`` (:func:`tests.wfdb_fixtures.write_record`);
* DICOM 12-lead ECG Waveform Storage built with pydicom (PS3.3 A.34, waveform module
  C.10.9: multiplex groups, channel definitions with SCP-ECG coded sources, sensitivity);
* GE MUSE XML in the ``RestingECG`` layout (base64 little-endian int16 per lead);
* HL7 aECG (``urn:hl7-org:v3`` AnnotatedECG: series, sequenceSet, GLIST_TS, SLIST_PQ);
* EDF with edfio; HDF5 in the CODE-15 layout with h5py; NumPy ``.npy``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from scipy.signal import resample_poly

from pipeline.data.leads import INDEPENDENT, canonical_lead
from pipeline.mimic_schema import ADC_GAIN, LEADS
from tests.wfdb_fixtures import write_record

FS = 500
N = 5000
_SCP_CODE = {
    "I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8,
    "III": 61, "aVR": 62, "aVL": 63, "aVF": 64,
}  # fmt: skip
#: CODE-15's lead order (Ribeiro et al. 2020, Nat Commun 11:1760; dataset description)
CODE15_LEADS = ("DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
_DICOM_MEANING = {"I": "Lead I (Einthoven)", "II": "Lead II", "III": "Lead III"}


def dipole_ecg(rng: np.random.Generator, fs: int = FS, seconds: float = 10.0) -> np.ndarray:
    """(12, T) mV in :data:`LEADS` order: QRS and T dipoles projected on the electrodes."""
    t = np.arange(int(fs * seconds)) / fs
    rr = 60.0 / rng.uniform(55, 100)
    phase = (t + rng.uniform(0, rr)) % rr  # seconds since the last beat
    axis = np.radians(rng.uniform(-20, 80))
    qrs = np.exp(-0.5 * ((phase - 0.2) / 0.012) ** 2) * rng.uniform(0.8, 1.6)
    tw = np.exp(-0.5 * ((phase - 0.45) / 0.05) ** 2) * rng.uniform(0.15, 0.35)
    direction = np.array([np.cos(axis), np.sin(axis), -0.4])
    dipole = np.outer(direction, qrs + tw)  # (3, T)
    r3 = np.sqrt(3) / 2
    limbs = np.array([[-0.5, -r3 / 3, 0], [0.5, -r3 / 3, 0], [0, 2 * r3 / 3, 0]])
    chest = np.array([[np.cos(a), 0.1, np.sin(a)] for a in np.radians([115, 95, 75, 60, 30, 0])])
    e = np.concatenate([limbs, chest]) @ dipole  # (9, T) electrode potentials
    e += rng.normal(0, 0.01, e.shape) + 0.05 * np.sin(2 * np.pi * 0.2 * t)
    ra, la, ll, v = e[0], e[1], e[2], e[3:]
    leads = {
        "I": la - ra, "II": ll - ra, "III": ll - la,
        "aVR": ra - (la + ll) / 2, "aVL": la - (ra + ll) / 2, "aVF": ll - (ra + la) / 2,
    }  # fmt: skip
    wct = (ra + la + ll) / 3
    leads.update({f"V{i + 1}": v[i] - wct for i in range(6)})
    return np.stack([leads[name] for name in LEADS])


def quantised(mv: np.ndarray, step_mv: float = 1 / ADC_GAIN) -> np.ndarray:
    """``mv`` rounded to a recorder's step (int16), as every writer below stores it."""
    return np.round(mv / step_mv) * step_mv


def write_wfdb(root: Path, mv: np.ndarray, study: int = 40000000, fs: int = FS) -> Path:
    """MIMIC-IV-ECG format (200 adu/mV); returns the record path without extension."""
    d = np.round(mv.T * ADC_GAIN).astype(np.int16)
    rel = write_record(root, 10000000 + study % 1000, study, d, fs=fs)
    return root / rel


def write_muse(
    path: Path,
    mv: np.ndarray,
    leads: Sequence[str] = INDEPENDENT,
    *,
    fs: int = FS,
    rhythm: bool = True,
    uv_per_bit: float = 4.88,
) -> Path:
    """GE MUSE XML: a Median waveform (one 1.2 s beat) and, if ``rhythm``, the Rhythm one."""

    def waveform(kind: str, x: np.ndarray) -> str:
        lead_data = []
        for name in leads:
            d = np.round(x[LEADS.index(name)] * 1000 / uv_per_bit).astype("<i2")
            lead_data.append(
                f"<LeadData><LeadByteCountTotal>{2 * d.size}</LeadByteCountTotal>"
                "<LeadTimeOffset>0</LeadTimeOffset>"
                f"<LeadSampleCountTotal>{d.size}</LeadSampleCountTotal>"
                f"<LeadAmplitudeUnitsPerBit>{uv_per_bit}</LeadAmplitudeUnitsPerBit>"
                "<LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>"
                "<LeadHighLimit>32767</LeadHighLimit><LeadLowLimit>-32768</LeadLowLimit>"
                f"<LeadID>{name}</LeadID><LeadOffsetFirstSample>0</LeadOffsetFirstSample>"
                "<FirstSampleBaseline>0</FirstSampleBaseline><LeadSampleSize>2</LeadSampleSize>"
                "<LeadOff>FALSE</LeadOff><BaselineSway>FALSE</BaselineSway>"
                f"<WaveFormData>{base64.b64encode(d.tobytes()).decode()}</WaveFormData></LeadData>"
            )
        return (
            f"<Waveform><WaveformType>{kind}</WaveformType>"
            "<WaveformStartTime>0</WaveformStartTime>"
            f"<NumberofLeads>{len(leads)}</NumberofLeads>"
            "<SampleType>CONTINUOUS_SAMPLES</SampleType>"
            f"<SampleBase>{fs}</SampleBase><SampleExponent>0</SampleExponent>"
            "<HighPassFilter>16</HighPassFilter><LowPassFilter>150</LowPassFilter>"
            "<ACFilter>60</ACFilter>" + "".join(lead_data) + "</Waveform>"
        )

    median = mv[:, : int(1.2 * fs)]
    body = waveform("Median", median) + (waveform("Rhythm", mv) if rhythm else "")
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        '<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n'
        "<RestingECG><MuseInfo><MuseVersion>9.0.9.18167</MuseVersion></MuseInfo>"
        "<TestDemographics><DataType>RESTING</DataType></TestDemographics>"
        f"{body}</RestingECG>\n",
        encoding="iso-8859-1",
    )
    return path


def write_dicom(path: Path, mv: np.ndarray, *, fs: int = FS, uv_per_bit: float = 2.5) -> Path:
    """12-lead ECG Waveform Storage with pydicom: a MEDIAN BEAT group, then the RHYTHM one."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def code(value: str, scheme: str, meaning: str) -> Dataset:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
        return c

    def group(label: str, x: np.ndarray) -> Dataset:
        w = Dataset()
        w.WaveformOriginality = "ORIGINAL"
        w.NumberOfWaveformChannels = len(LEADS)
        w.NumberOfWaveformSamples = x.shape[1]
        w.SamplingFrequency = fs
        w.MultiplexGroupLabel = label
        channels = []
        for name in LEADS:
            ch = Dataset()
            meaning = _DICOM_MEANING.get(name, f"Lead {name}")
            ch.ChannelSourceSequence = [code(f"5.6.3-9-{_SCP_CODE[name]}", "SCPECG", meaning)]
            ch.ChannelSensitivity = uv_per_bit
            ch.ChannelSensitivityUnitsSequence = [code("uV", "UCUM", "microvolt")]
            ch.ChannelSensitivityCorrectionFactor = 1
            ch.ChannelBaseline = 0
            ch.WaveformBitsStored = 16
            channels.append(ch)
        w.ChannelDefinitionSequence = channels
        w.WaveformBitsAllocated = 16
        w.WaveformSampleInterpretation = "SS"
        d = np.round(x.T * 1000 / uv_per_bit).astype("<i2")  # (T, C) multiplexed
        w.WaveformData = d.tobytes()
        return w

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-lead ECG
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "ECG"
    ds.WaveformSequence = [group("MEDIAN BEAT", mv[:, : int(1.2 * fs)]), group("RHYTHM", mv)]
    ds.save_as(path, enforce_file_format=True)
    return path


def write_aecg(path: Path, mv: np.ndarray, *, fs: int = FS, uv_per_digit: float = 5.0) -> Path:
    """HL7 aECG: one RHYTHM series, GLIST_TS time sequence, one SLIST_PQ per lead."""
    seqs = [
        '<component><sequence><code code="TIME_ABSOLUTE" codeSystem="2.16.840.1.113883.5.4"/>'
        '<value xsi:type="GLIST_TS"><head value="20021122091000.000"/>'
        f'<increment value="{1 / fs:g}" unit="s"/></value></sequence></component>'
    ]
    for name in LEADS:
        digits = np.round(mv[LEADS.index(name)] * 1000 / uv_per_digit).astype(int)
        seqs.append(
            f'<component><sequence><code code="MDC_ECG_LEAD_{escape(name.upper())}" '
            'codeSystem="2.16.840.1.113883.6.24"/><value xsi:type="SLIST_PQ">'
            f'<origin value="0" unit="uV"/><scale value="{uv_per_digit:g}" unit="uV"/>'
            f"<digits>{' '.join(map(str, digits))}</digits></value></sequence></component>"
        )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<AnnotatedECG xmlns="urn:hl7-org:v3" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<id root="2.16.840.1.113883.3.1"/><code code="93000" codeSystem="2.16.840.1.113883.6.12"/>'
        '<component><series><code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>'
        f"<component><sequenceSet>{''.join(seqs)}</sequenceSet></component>"
        "</series></component></AnnotatedECG>\n"
    )
    return path


def write_edf(path: Path, mv: np.ndarray, *, fs: int = FS) -> Path:
    """EDF with edfio: one signal per lead in uV (physical range from the data)."""
    import edfio

    signals = [
        edfio.EdfSignal(mv[k] * 1000, fs, label=name, physical_dimension="uV")
        for k, name in enumerate(LEADS)
    ]
    edfio.Edf(signals).write(path)
    return path


def code15(mv: np.ndarray, fs_from: int = FS) -> np.ndarray:
    """(4096, 12) as CODE-15 stores a 10 s exam: 400 Hz, its lead order, zero-padded
    centred to 4096."""
    order = [LEADS.index(canonical_lead(name) or "") for name in CODE15_LEADS]
    x = resample_poly(mv[order], 400, fs_from, axis=1).T  # (4000, 12)
    return np.pad(x, ((48, 48), (0, 0))).astype(np.float32)


def write_hdf5(path: Path, mvs: Sequence[np.ndarray], exam_ids: Sequence[int]) -> Path:
    """CODE-15 layout: ``tracings`` (N, 4096, 12) float32 at 400 Hz and ``exam_id`` (N,)."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("tracings", data=np.stack([code15(m) for m in mvs]))
        f.create_dataset("exam_id", data=np.asarray(exam_ids, np.int64))
    return path
