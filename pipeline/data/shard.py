"""WFDB records -> fixed-size float16 shards that training reads by memory mapping.

Each shard group (``study_id % n_groups``) is one Snakemake job, so a cluster spreads
the work. A group directory holds ``shard_00000.npy`` ... (``(n, 12, L_out)`` float16,
mV, lead order :data:`pipeline.mimic_schema.LEADS`), ``index.parquet`` (study_id -> shard,
offset; each shard file's size and SHA-256 in its metadata, checked by the store:
:mod:`pipeline.data.shard_check`) and ``quarantine.tsv`` (records that could not be
used, with the reason; :mod:`pipeline.data.shard_index` writes and merges both). Shards
are keyed by record only; the splits never influence them.

Preprocessing follows the MDS-ED / CardioLab protocol: NaNs linearly interpolated per
lead, amplitudes clipped to +-clip_mv, the record's rate (500 Hz in MIMIC; any whole rate
>= fs_out is accepted) -> fs_out by polyphase resampling (:func:`resample`: resample_poly's
FIR filter, applied by FFT convolution for integer decimation). Records are read by
:func:`pipeline.data.wfdb_record.read_record`, the reader inference uses too: lead names
in any spelling, extra channels ignored (counted and logged). The settings are stored in
the index's parquet metadata (:mod:`pipeline.data.preprocessing`) for the model files.
Records are processed in batches, in parallel worker processes when the rule has several
threads, and written in input order, so the output does not depend on the worker count.

Quarantine reasons (``kind: detail``): missing_header, missing_signal, bad_header,
multi_segment, not_12_lead, missing_lead, truncated_signal, signal_size,
sampling_frequency, length, units, read_error, all_nan_lead, flat_lead. A lead with
some NaNs is interpolated and kept.

Header time check: the header's base date/time is compared with the cohort's
``ecg_time``. A difference above ``time_tolerance_s`` (or a header without a time) is
counted and logged as a warning, and the record is kept: the record list's study_id ->
path mapping is authoritative and the waveform is intact; cohort membership by time is
the extraction stage's concern, and quarantining would drop valid signals over metadata.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.ecg_store import Record, RecordError, load_checked, prepare
from pipeline.data.preprocessing import Preprocessing
from pipeline.data.shard_check import ShardEntry, describe
from pipeline.data.shard_index import merge_shard_groups, write_tables
from pipeline.io import atomic_path
from pipeline.logs import progress
from pipeline.mimic_schema import FS_HZ, LEADS, N_SAMPLES

log = logging.getLogger(__name__)

__all__ = ["ShardConfig", "ShardReport", "merge_shard_groups", "shard_group"]


@dataclass(frozen=True)
class ShardConfig:
    """The ``shard`` config section (fields after ``clip_mv`` have code defaults).

    Attributes:
        n_groups: parallel shard jobs; a record goes to group ``study_id % n_groups``.
        shard_size: records per shard file (the last file of a group may be shorter).
        fs_out: output sampling frequency in Hz.
        clip_mv: amplitudes are clipped to +- this many mV before resampling.
        fs_in: expected header sampling frequency.
        n_samples: expected header signal length.
        batch_records: records per worker task (amortises process round trips).
        time_tolerance_s: allowed |header time - cohort ecg_time| before a warning.
        reader: "native" (strict fast parser, wfdb fallback) or "wfdb" (always wfdb).
    """

    n_groups: int
    shard_size: int
    fs_out: int
    clip_mv: float
    fs_in: int = FS_HZ
    n_samples: int = N_SAMPLES
    batch_records: int = 64
    time_tolerance_s: float = 60.0
    reader: str = "native"

    def __post_init__(self) -> None:
        for key in ("n_groups", "shard_size", "fs_out", "fs_in", "n_samples", "batch_records"):
            if getattr(self, key) < 1:
                raise ValueError(f"shard.{key} must be >= 1, got {getattr(self, key)}")
        if self.clip_mv <= 0:
            raise ValueError(f"shard.clip_mv must be > 0, got {self.clip_mv}")
        if self.reader not in ("native", "wfdb"):
            raise ValueError(f"shard.reader must be 'native' or 'wfdb', got {self.reader!r}")
        if (self.n_samples * self.fs_out) % self.fs_in:
            raise ValueError(
                f"shard.fs_out={self.fs_out} gives no whole number of samples "
                f"from {self.n_samples} samples at {self.fs_in} Hz"
            )

    @property
    def out_len(self) -> int:
        """Samples per lead after resampling (1000 for 10 s at 100 Hz)."""
        return self.n_samples * self.fs_out // self.fs_in

    def preprocessing(self) -> Preprocessing:
        """What these settings do to a record (stored in the index metadata)."""
        return Preprocessing(
            self.fs_out, self.out_len, self.fs_in, self.n_samples, clip_mv=self.clip_mv
        )


@dataclass(frozen=True)
class ShardReport:
    """What one shard group did (counts only: safe to log)."""

    group: int
    n_records: int
    n_sharded: int
    n_quarantined: int
    n_shards: int
    n_time_mismatch: int
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    n_extra_channels: int = 0  # kept records whose extra channels were ignored
    n_resampled_other_rate: int = 0  # kept records not at the nominal rate fs_in


Row = tuple[int, str, "datetime | None"]  # study_id, path, cohort ecg_time


@dataclass
class _Batch:
    """A worker's output: usable records (in input order) and quarantined ones."""

    ok_ids: list[int]
    signals: np.ndarray  # (n_ok, 12, L_out) float16
    mismatch: list[bool]  # per usable record: header time disagrees with the cohort
    quarantined: list[tuple[int, str]]  # (study_id, reason)
    n_extra: int = 0  # usable records with ignored extra channels
    n_other_rate: int = 0  # usable records not at fs_in


def _time_mismatch(header: datetime | None, ecg_time: datetime | None, tol_s: float) -> bool:
    if header is None or ecg_time is None:
        return True
    return abs(header - ecg_time) > timedelta(seconds=tol_s)


def _process_batch(rows: Sequence[Row], ecg_root: Path, cfg: ShardConfig) -> _Batch:
    """Read, check and preprocess a batch of records (runs in a worker process)."""
    ok: list[int] = []
    recs: list[Record] = []
    mismatch: list[bool] = []
    bad: list[tuple[int, str]] = []
    for study_id, path, ecg_time in rows:
        try:
            rec = load_checked(
                ecg_root / path, cfg.fs_in, cfg.n_samples, cfg.fs_out, cfg.reader == "wfdb"
            )
        except RecordError as err:
            bad.append((study_id, str(err)))
            continue
        ok.append(study_id)
        recs.append(rec)
        mismatch.append(_time_mismatch(rec.base_datetime, ecg_time, cfg.time_tolerance_s))
    out = prepare(recs, cfg.fs_out, cfg.clip_mv, cfg.out_len)  # (n, 12, L_out) float16
    n_extra = sum(bool(r.extra) for r in recs)
    n_other = sum(r.fs != cfg.fs_in for r in recs)
    return _Batch(ok, out, mismatch, bad, n_extra, n_other)


def _executor(workers: int) -> Executor | None:
    """A process pool for ``workers > 1`` (None: run in this process).

    Fork, not spawn: spawn re-imports the Snakemake script as ``__main__`` in every worker.
    Workers only run numpy/scipy code, so inheriting polars' thread pool is harmless.
    """
    if workers <= 1:
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def _batches(rows: list[Row], ecg_root: Path, cfg: ShardConfig, workers: int) -> Iterator[_Batch]:
    """Batch results in input order, so shards are identical for any worker count."""
    chunks = [rows[i : i + cfg.batch_records] for i in range(0, len(rows), cfg.batch_records)]
    pool = _executor(workers)
    if pool is None:
        yield from (_process_batch(c, ecg_root, cfg) for c in chunks)
        return
    with pool:
        # At most 2 batches per worker in flight: memory stays bounded when the writer lags.
        pending: deque[Future[_Batch]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_process_batch, chunk, ecg_root, cfg))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _records(
    batches: Iterator[_Batch], counts: Counter[str]
) -> Iterator[tuple[int, np.ndarray | None, str | bool]]:
    """Flatten batches to (study_id, signal, mismatch) or (study_id, None, reason).

    ``counts`` accumulates the kept records with extra channels / at another rate.
    """
    for b in batches:
        counts.update(extra=b.n_extra, other_rate=b.n_other_rate)
        yield from zip(b.ok_ids, b.signals, b.mismatch, strict=True)
        yield from ((sid, None, reason) for sid, reason in b.quarantined)


def _group_rows(cohort: Path, group: int, n_groups: int) -> list[Row]:
    df = (
        pl.scan_parquet(cohort)
        .select("study_id", "path", "ecg_time")
        .filter(pl.col("study_id") % n_groups == group)
        .sort("study_id")
        .collect()
    )
    if df["study_id"].is_duplicated().any():
        raise ValueError(f"{cohort}: column 'study_id' is not unique")
    if df["path"].null_count():
        raise ValueError(f"{cohort}: column 'path' has nulls")
    return list(df.iter_rows())


def shard_group(
    cohort: Path, ecg_root: Path, group: int, out_dir: Path, cfg: ShardConfig, *, workers: int = 1
) -> ShardReport:
    """Shard the cohort records of one group (``study_id % cfg.n_groups == group``).

    Args:
        cohort: cohort.parquet (study_id, path, ecg_time are read).
        ecg_root: MIMIC-IV-ECG root; a record is ``ecg_root / path`` + ``.hea``/``.dat``.
        group: this job's group in ``[0, n_groups)``.
        out_dir: the group directory (``results/shards/group_{group}``), written atomically.
        cfg: shard settings.
        workers: processes reading records (the rule's threads).

    Returns:
        Counts of sharded and quarantined records.

    Raises:
        FileNotFoundError: the ECG root does not exist.
        RuntimeError: every record of a non-empty group was quarantined.
    """
    start = time.perf_counter()
    cohort, ecg_root, out_dir = Path(cohort), Path(ecg_root), Path(out_dir)
    if not 0 <= group < cfg.n_groups:
        raise ValueError(f"group {group} outside [0, shard.n_groups={cfg.n_groups})")
    if not ecg_root.is_dir():
        raise FileNotFoundError(f"ECG root {ecg_root} (source.mimic_iv_ecg) does not exist")
    rows = _group_rows(cohort, group, cfg.n_groups)
    paths = {sid: path for sid, path, _ in rows}
    log.info("group %d: %d records, %d worker(s)", group, len(rows), workers)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        counts: Counter[str] = Counter()
        records = _records(_batches(rows, ecg_root, cfg, workers), counts)
        records = progress(records, desc=f"shard g{group}", total=len(rows), unit="rec")
        index, quarantine, entries, n_mismatch = _write_shards(
            records, tmp, out_dir.name, paths, cfg
        )
        _check_complete(rows, index, quarantine, group, ecg_root)
        write_tables(tmp, index, quarantine, cfg.preprocessing(), entries)
    report = ShardReport(
        group, len(rows), len(index), len(quarantine), len(entries), n_mismatch,
        dict(Counter(q[2].split(":")[0] for q in quarantine).most_common()),
        time.perf_counter() - start, counts["extra"], counts["other_rate"],
    )  # fmt: skip
    _log_report(report, cfg)
    return report


def _write_shards(
    records: Iterator[tuple[int, np.ndarray | None, str | bool]],
    tmp: Path,
    group_name: str,
    paths: dict[int, str],
    cfg: ShardConfig,
) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, str]], dict[str, ShardEntry], int]:
    """Pack usable records into shard files of ``shard_size`` inside ``tmp``.

    The index names shards relative to results/shards (``group_<g>/shard_<n>.npy``):
    ``tmp`` is renamed to the group directory ``group_name`` once complete.

    Returns:
        (index rows (study_id, shard, offset), quarantine rows (study_id, path, reason),
        each shard file's size and hash by index name, number of header-time mismatches).
    """
    buf = np.empty((cfg.shard_size, len(LEADS), cfg.out_len), np.float16)  # (S, 12, L)
    index: list[tuple[int, str, int]] = []
    quarantine: list[tuple[int, str, str]] = []
    entries: dict[str, ShardEntry] = {}
    fill = n_mismatch = 0

    def save() -> None:  # the file is still in the page cache: hashing it is cheap
        name = f"shard_{len(entries):05d}.npy"
        np.save(tmp / name, buf[:fill])
        entries[f"{group_name}/{name}"] = describe(tmp / name)

    for sid, sig, note in records:
        if sig is None:
            quarantine.append((sid, paths[sid], str(note)))
            continue
        index.append((sid, f"{group_name}/shard_{len(entries):05d}.npy", fill))
        buf[fill] = sig
        fill += 1
        n_mismatch += bool(note)
        if fill == cfg.shard_size:
            save()
            fill = 0
    if fill:  # the last, shorter shard
        save()
    return index, quarantine, entries, n_mismatch


def _check_complete(
    rows: list[Row],
    index: list[tuple[int, str, int]],
    quarantine: list[tuple[int, str, str]],
    group: int,
    ecg_root: Path,
) -> None:
    """Every record of the group is sharded or quarantined, exactly once."""
    done = [r[0] for r in index] + [q[0] for q in quarantine]
    if len(done) != len(rows) or set(done) != {r[0] for r in rows}:
        raise AssertionError(f"group {group}: {len(rows)} records in, {len(done)} accounted for")
    if rows and not index:
        top = Counter(q[2].split(":")[0] for q in quarantine).most_common(1)[0][0]
        raise RuntimeError(
            f"group {group}: all {len(rows)} records quarantined (most common: {top}); "
            f"check source.mimic_iv_ecg = {ecg_root}"
        )


def _log_report(r: ShardReport, cfg: ShardConfig) -> None:
    rate = r.n_records / max(r.seconds, 1e-9)
    log.info(
        "group %d: %d of %d records sharded into %d file(s) in %.1f s (%.0f rec/s)",
        r.group, r.n_sharded, r.n_records, r.n_shards, r.seconds, rate,
    )  # fmt: skip
    msg = f"shard group {r.group}: {r.n_quarantined} of {r.n_records} records quarantined"
    msg += f" {r.reasons}" if r.reasons else ""
    (log.warning if r.n_quarantined else log.info)(msg)  # once: the log reaches stderr too
    if r.n_extra_channels:
        log.warning(
            "group %d: %d kept record(s) have channels beyond the 12 standard leads; "
            "the extra channels were ignored", r.group, r.n_extra_channels,
        )  # fmt: skip
    if r.n_resampled_other_rate:
        log.info(
            "group %d: %d kept record(s) not at %d Hz were resampled from their own rate",
            r.group, r.n_resampled_other_rate, cfg.fs_in,
        )  # fmt: skip
    if r.n_time_mismatch:
        log.warning(
            "group %d: %d kept record(s) whose header time is missing or differs from the "
            "cohort ecg_time by more than %.0f s",
            r.group, r.n_time_mismatch, cfg.time_tolerance_s,
        )  # fmt: skip
