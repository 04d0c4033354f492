"""ECG files as hospitals and datasets export them, behind the one record interface.

:func:`detect` names a file's format from its content (magic bytes, XML root) and then its
extension; :func:`read_source` reads one recording of it as a checked
:class:`~pipeline.data.wfdb_record.Record` (12 leads, mV, its own rate), refusing with the
quarantine reason ``kind: detail`` (:class:`RecordError`) otherwise.

======  ================================================  ==================================
format  files                                             reader
======  ================================================  ==================================
wfdb    ``.hea`` + signal files (MIMIC-IV-ECG, PTB-XL)    :mod:`pipeline.data.wfdb_record`
muse    GE MUSE XML (``RestingECG``)                      :mod:`.muse` (defusedxml)
dicom   DICOM 12-lead ECG / General ECG waveforms         :mod:`.dicom` (pydicom)
aecg    HL7 aECG XML (``AnnotatedECG``)                   :mod:`.aecg` (defusedxml)
edf     EDF / EDF+ / BDF                                  :mod:`.edf` (edfio)
hdf5    HDF5 arrays (CODE-15 ``tracings``)                :mod:`.arrays` (h5py)
npy     NumPy ``.npy`` / ``.npz``                         :mod:`.arrays`
======  ================================================  ==================================
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.formats.aecg import read_aecg
from pipeline.data.formats.arrays import ARRAY_FORMATS, ArraySpec, array_items, read_array
from pipeline.data.formats.common import Channels, to_record
from pipeline.data.formats.dicom import read_dicom
from pipeline.data.formats.edf import read_edf
from pipeline.data.formats.muse import read_muse
from pipeline.data.wfdb_record import Record, RecordError, read_record

__all__ = ["ARRAY_FORMATS", "ArraySpec", "array_items", "detect", "read_source"]

_EXTENSIONS = {
    ".hea": "wfdb",
    ".dat": "wfdb",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".edf": "edf",
    ".bdf": "edf",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".npy": "npy",
    ".npz": "npz",
}
_MAGIC = (
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"\x93NUMPY", "npy"),
    (b"0       ", "edf"),  # EDF header: version "0" padded to 8 characters
    (b"\xffBIOSEMI", "edf"),
)
_XML_ROOTS = ((b"<RestingECG", "muse"), (b"AnnotatedECG", "aecg"))


def detect(path: str | Path) -> str | None:
    """The format of ``path`` (see the module table), or None when it is none of them.

    A path that is no file is a WFDB record base, unless its extension names another
    format (then reading it reports the missing file).
    """
    path = Path(path)
    if not path.is_file():
        fmt = _EXTENSIONS.get(path.suffix.lower(), "wfdb")
        return "wfdb" if path.with_name(path.name + ".hea").is_file() else fmt
    if path.suffix.lower() == ".hea" or path.with_suffix(".hea").is_file():
        return "wfdb"  # a WFDB header or signal file (.dat, .mat): no need to open it
    with path.open("rb") as f:
        head = f.read(4096)
    if head[128:132] == b"DICM":
        return "dicom"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head.startswith(b"PK") and path.suffix.lower() == ".npz":
        return "npz"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 XML (some MUSE exports)
        head = head.decode("utf-16", errors="ignore").encode()
    for root, fmt in _XML_ROOTS:
        if root in head:
            return fmt
    return _EXTENSIONS.get(path.suffix.lower())


def _channels(path: Path, fmt: str, item: int | None, spec: ArraySpec | None) -> Channels:
    if fmt == "muse":
        return read_muse(path)
    if fmt == "dicom":
        return read_dicom(path)
    if fmt == "aecg":
        return read_aecg(path)
    if fmt == "edf":
        return read_edf(path)
    if fmt in ARRAY_FORMATS:
        return read_array(path, fmt, item, spec or ArraySpec())
    raise RecordError(
        f"unknown_format: {path.suffix or 'no extension'}; expected WFDB, GE MUSE XML, DICOM, "
        "HL7 aECG, EDF/BDF, HDF5, .npy or .npz"
    )


def read_source(
    path: str | Path,
    fmt: str | None,
    fs_in: int,
    n_samples: int,
    min_fs: int,
    item: int | None = None,
    spec: ArraySpec | None = None,
) -> Record:
    """Read one recording of any supported format as a checked 12-lead record.

    Args:
        path: the file (WFDB: the record path, with or without extension).
        fmt: its format from :func:`detect` (None: unknown, refused).
        fs_in, n_samples: nominal rate and samples (10 s), as for WFDB.
        min_fs: lowest whole rate accepted.
        item: recording of a multi-record array file (None: the only one).
        spec: rate, leads and units of array files.

    Raises:
        RecordError: the quarantine reason (one line).
    """
    if fmt == "wfdb":
        return read_record(path, fs_in, n_samples, min_fs=min_fs)
    if not Path(path).is_file():
        raise RecordError(f"missing_file: {Path(path).name}")
    try:
        ch = _channels(Path(path), fmt or "", item, spec)
    except RecordError as err:
        # one line, whatever the library's message held
        raise RecordError(" ".join(str(err).split())) from None
    return to_record(ch, fs_in, n_samples, min_fs)
