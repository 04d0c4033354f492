"""MIMIC-IV-ECG side of the synthetic cohort: WFDB records, record_list, machine_measurements."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.mimic_schema import (
    ADC_BASELINE,
    ADC_GAIN,
    FS_HZ,
    LEADS,
    MACHINE_MISSING,
    UNITS,
    WFDB_FMT,
)
from pipeline.synth.ecg import leads_mv, to_adc
from pipeline.synth.tables import finish, ts

MAINS_HZ = 60.0  # US mains frequency (MIMIC is a Boston hospital)
_EPOCH = dt.datetime(1970, 1, 1)


def record_path(subject_id: int, study_id: int) -> str:
    """``files/p<first 4 digits>/p<subject>/s<study>/<study>`` (no extension)."""
    s = str(subject_id)
    return f"files/p{s[:4]}/p{s}/s{study_id}/{study_id}"


def record_list(ecgs: pl.DataFrame) -> pl.DataFrame:
    paths = [record_path(a, b) for a, b in zip(ecgs["subject_id"], ecgs["study_id"], strict=True)]
    return finish(
        ecgs.with_columns(
            pl.col("study_id").cast(pl.Utf8).alias("file_name"),
            ts("ecg_time").alias("ecg_time"),
            pl.Series("path", paths),
        ),
        "record_list",
    )


def _reports(rng: np.random.Generator, p: pl.DataFrame) -> list[list[str]]:
    hr, af, bbb = p["ecg_heart_rate"].to_numpy(), p["af"].to_numpy(), p["bbb"].to_numpy()
    st, terr = p["st_mv"].to_numpy(), p["territory"].to_numpy()
    qtc = p["qt_s"].to_numpy() / np.sqrt(60.0 / hr)
    out = []
    for i in range(p.height):
        r = [
            "Atrial fibrillation"
            if af[i]
            else "Sinus tachycardia"
            if hr[i] > 100
            else "Sinus bradycardia"
            if hr[i] < 60
            else "Sinus rhythm"
        ]
        if bbb[i] == 1:
            r.append("Left bundle branch block")
        elif bbb[i] == 2:
            r.append("Right bundle branch block")
        if st[i] > 0.1:
            r.append(
                (
                    "",
                    "Anterior ST elevation - consider acute infarct",
                    "Inferior ST elevation - consider acute infarct",
                    "Lateral ST elevation - consider acute infarct",
                )[int(terr[i])]
            )
        elif st[i] < -0.07 and rng.random() < 0.6:
            r.append("ST depression - possible ischemia")
        if qtc[i] > 0.48 and rng.random() < 0.7:
            r.append("Prolonged QT interval")
        if p["t_amp"][i] > 2.0 and rng.random() < 0.5:
            r.append("Peaked T waves")
        r.append("Abnormal ECG" if len(r) > 1 or af[i] else "Normal ECG")
        if rng.random() < 0.015:  # no diagnosis statement: the cohort step drops these
            r = []
        out.append(r)
    return out


def machine_measurements(
    rng: np.random.Generator, ecgs: pl.DataFrame, params: pl.DataFrame
) -> pl.DataFrame:
    n = ecgs.height
    reports = _reports(rng, params)
    rep = {f"report_{k}": [r[k] if k < len(r) else None for r in reports] for k in range(18)}
    hr = params["ecg_heart_rate"].to_numpy()
    af = params["af"].to_numpy()
    p_on = rng.integers(30, 60, n)
    qrs_on = p_on + (params["pr_s"].to_numpy() * 1000).astype(np.int64)
    miss = np.int64(MACHINE_MISSING)
    cols = {
        "cart_id": rng.choice([6848, 6852, 6702, 8419, 6856], n),
        "bandwidth": np.full(n, "0.005-150 Hz"),
        "filtering": np.full(n, "60 Hz notch Baseline filter"),
        "rr_interval": np.round(60000 / hr).astype(np.int64),
        "p_onset": np.where(af, miss, p_on),
        "p_end": np.where(af, miss, p_on + rng.integers(90, 120, n)),
        "qrs_onset": qrs_on,
        "qrs_end": qrs_on + (params["qrs_s"].to_numpy() * 1000).astype(np.int64),
        "t_end": qrs_on + (params["qt_s"].to_numpy() * 1000).astype(np.int64),
        "p_axis": np.where(af, miss, rng.integers(20, 80, n)),
        "qrs_axis": np.round(params["qrs_axis_deg"].to_numpy()).astype(np.int64),
        "t_axis": np.round(params["t_axis_deg"].to_numpy()).astype(np.int64),
    }
    df = ecgs.select("subject_id", "study_id", "ecg_time").with_columns(
        ts("ecg_time").alias("ecg_time"),
        *[pl.Series(k, v, dtype=pl.Utf8) for k, v in rep.items()],
        *[pl.Series(k, v) for k, v in cols.items()],
    )
    return finish(df, "machine_measurements")


def write_records(
    rng: np.random.Generator, ecgs: pl.DataFrame, params: pl.DataFrame, root: Path
) -> int:
    """Write one WFDB record (.hea + .dat) per ECG under ``root``; returns the count."""
    rows = params.to_dicts()
    for (subject, study, t), p in zip(
        ecgs.select("subject_id", "study_id", "ecg_time").iter_rows(), rows, strict=True
    ):
        sig = to_adc(leads_mv(p, rng, MAINS_HZ))  # (12, L) int16
        if rng.random() < 0.01:  # short dropout in one lead, stored as the missing value
            start = int(rng.integers(0, 4500))
            sig[int(rng.integers(0, 12)), start : start + int(rng.integers(20, 400))] = -32768
        out = root / record_path(subject, study)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_wfdb(out, sig.T, int(subject), _EPOCH + dt.timedelta(seconds=int(t)))
    return len(rows)


class WaveformWriter:
    """Writes each chunk's WFDB records, in this process (``workers`` 0) or in worker
    processes while this one generates the next chunk's tables.

    A chunk's records are the last draws of its stream, so a worker handed the stream's state
    writes the same bytes (``tests/test_synth_schema.py``). At most ``2 x workers`` chunks wait,
    which bounds memory at any scale. Use as a context manager; :meth:`finish` waits for all.
    """

    def __init__(self, root: Path, workers: int = 0) -> None:
        self.root, self.workers, self.written = root, workers, 0
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[Future[int]] = deque()
        if workers > 0:  # spawn: a forked child gets polars' pool without its threads (hangs)
            self._pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def __enter__(self) -> WaveformWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def write(self, rng: np.random.Generator, ecgs: pl.DataFrame, params: pl.DataFrame) -> None:
        """Write one chunk's records, the last draws of its stream ``rng`` (a worker gets
        the stream's state, so ``rng`` itself is left where it was)."""
        if self._pool is None:
            self.written += write_records(rng, ecgs, params, self.root)
            return
        ecgs = ecgs.select("subject_id", "study_id", "ecg_time")
        state = rng.bit_generator.state
        self._pending.append(self._pool.submit(write_records_from, state, ecgs, params, self.root))
        while len(self._pending) > 2 * self.workers:
            self.written += self._pending.popleft().result()

    def finish(self) -> int:
        """Wait for every chunk (a worker's error is raised here); the records written."""
        while self._pending:
            self.written += self._pending.popleft().result()
        return self.written


def write_records_from(
    state: Mapping[str, Any], ecgs: pl.DataFrame, params: pl.DataFrame, root: Path
) -> int:
    """:func:`write_records` with a generator restored from ``state`` (``bit_generator.state``
    of a :func:`numpy.random.default_rng` stream), so a worker process writes the very bytes
    the generating process would have written at that point of its stream."""
    bits = np.random.PCG64()
    bits.state = state  # type: ignore[assignment]  # numpy types it as its TypedDict
    return write_records(np.random.Generator(bits), ecgs, params, root)


def write_wfdb(path: Path, d_signal: np.ndarray, subject_id: int, when: dt.datetime) -> None:
    """Write ``path``.hea/.dat exactly as ``wfdb.wrsamp`` does for MIMIC-IV-ECG's format.

    ``wfdb.wrsamp`` itself spends ~0.1 s per record on header bookkeeping, which would
    dominate the cohort's generation time, so the (simple, fixed) format is written here
    directly; the tests check byte equality with ``wfdb.wrsamp`` and read records back
    with ``wfdb.rdrecord``.

    Args:
        path: record path without extension; the record name is its last component.
        d_signal: (L, 12) int16 samples (adc gain ADC_GAIN, baseline 0).
        subject_id: written in the ``# <subject_id>: ...`` comment line.
        when: record base time and date.
    """
    name = path.name
    sig = np.ascontiguousarray(d_signal, dtype="<i2")  # (L, 12) interleaved on disk
    checksum = sig.astype(np.int64).sum(axis=0) % 65536
    lines = [f"{name} {sig.shape[1]} {FS_HZ} {sig.shape[0]} {when:%H:%M:%S} {when:%d/%m/%Y}"]
    for k, lead in enumerate(LEADS):
        lines.append(
            f"{name}.dat {WFDB_FMT} {ADC_GAIN:.1f}({ADC_BASELINE})/{UNITS} 16 0 "
            f"{int(sig[0, k])} {int(checksum[k])} 0 {lead}"
        )
    lines.append(f"# <subject_id>: {subject_id}")
    path.with_suffix(".dat").write_bytes(sig.tobytes())
    path.with_suffix(".hea").write_text("\n".join(lines) + "\n")
