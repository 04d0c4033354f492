"""Generate the synthetic MIMIC-shaped cohort: public entry points.

Patients are simulated in fixed-size chunks, each with its own random stream derived
from (seed, chunk index), and every table is appended chunk by chunk to an open
(gzip) stream, so memory stays bounded at any scale and the bytes depend only on the
seed and the size. Each dataset root is built in a temporary directory and renamed into
place at the end (:func:`pipeline.io.atomic_path`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from pipeline.io import atomic_path
from pipeline.logs import progress
from pipeline.mimic_schema import DATE_FORMAT, ECG, ED, HOSP, TABLES, TIMESTAMP_FORMAT
from pipeline.synth import codes as icd
from pipeline.synth import tables
from pipeline.synth.catalogue import LabItem, load_lab_items
from pipeline.synth.coding import load_coding_rates, recode
from pipeline.synth.ecg import ecg_params
from pipeline.synth.encounters import Counters, assign_stay_ids, schedule_ecgs
from pipeline.synth.labs import labevents_frame
from pipeline.synth.physiology import simulate_stays, simulate_subjects
from pipeline.synth.records import WaveformWriter, machine_measurements, record_list
from pipeline.synth.signatures import add_signatures

log = logging.getLogger(__name__)

CHUNK_SUBJECTS = 400  # fixed: part of what the seed reproduces
WORLDS = ("realistic", "null")
_WORLD_STREAM = 1  # the realistic world's own draws: default_rng([seed, chunk, 1])
MARKER = "SYNTHETIC_COHORT.txt"
_GT_COLUMNS = (
    "study_id",
    "subject_id",
    "ecg_stay_id",
    "hadm_id",
    "kind",
    "ecg_time",
    "age",
    "female",
    "height_cm",
    "bmi",
    "potassium",
    "calcium",
    "sodium",
    "creatinine",
    "hemoglobin",
    "troponin",
    "albumin",
    "renal",
    "anaemia",
    "ckd_stage",
    "ischaemia",
    "territory",
    "stemi",
    "hf",
    "hf_decomp",
    "af",
    "bbb",
    "sepsis",
    "aki",
    "heart_rate",
)


@dataclass(frozen=True)
class SynthConfig:
    """The ``synthetic:`` config section.

    Attributes:
        seed: random seed; same seed and size give byte-identical files.
        n_subjects: patients at scale 1.
        scale: multiplies n_subjects (10 for benchmark-size tables).
        extra_lab_draws: additional outpatient lab draws per stay (grows labevents only).
        write_waveforms: write the WFDB records (skip for table-only benchmarks).
        world: "realistic" (cited ICD coding rates and weak ECG signatures of age, sex,
            anaemia and renal disease) or "null" (the original generator, byte for byte:
            the control in which the clinical data add nothing the codes do not carry).
    """

    seed: int = 0
    n_subjects: int = 1200
    scale: float = 1.0
    extra_lab_draws: int = 0
    write_waveforms: bool = True
    world: str | None = "realistic"

    def __post_init__(self) -> None:
        if self.world is None:  # YAML reads an unquoted `world: null` as None
            object.__setattr__(self, "world", "null")
        if self.world not in WORLDS:
            raise ValueError(f"synthetic.world must be one of {WORLDS}, got {self.world!r}")
        if self.n_subjects < 1:
            raise ValueError(f"synthetic.n_subjects must be >= 1, got {self.n_subjects}")
        if not self.scale > 0:
            raise ValueError(f"synthetic.scale must be > 0, got {self.scale}")
        if self.extra_lab_draws < 0:
            raise ValueError(f"synthetic.extra_lab_draws must be >= 0, got {self.extra_lab_draws}")

    @property
    def total_subjects(self) -> int:
        return max(1, round(self.n_subjects * self.scale))


@dataclass
class SynthSummary:
    """Row counts of what was written (also the rule's JSON output)."""

    subjects: int = 0
    stays: int = 0
    admissions: int = 0
    ecgs: int = 0
    records_written: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Sink:
    """A CSV file written chunk by chunk; gzip without mtime or file name (stable bytes)."""

    def __init__(self, path: Path, compresslevel: int = 6) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._raw: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._gz: gzip.GzipFile | None = None
        if path.suffix == ".gz":
            self._gz = gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=compresslevel
            )
        self.rows = 0
        self._header = True

    def write(self, df: pl.DataFrame) -> None:
        buf = io.BytesIO()
        df.write_csv(
            buf,
            include_header=self._header,
            datetime_format=TIMESTAMP_FORMAT,
            date_format=DATE_FORMAT,
        )
        self._header = False
        (self._gz or self._raw).write(buf.getvalue())
        self.rows += df.height

    def close(self) -> None:
        if self._gz is not None:
            self._gz.close()
        self._raw.close()


def _guard_root(root: Path) -> None:
    """Refuse to replace a non-empty directory the generator did not make (e.g. real MIMIC)."""
    # Empty directories are fine: Snakemake creates the outputs' parents before the job.
    has_files = root.exists() and any(p.is_file() for p in root.rglob("*"))
    if has_files and not (root / MARKER).exists():
        raise FileExistsError(
            f"{root} exists, is not empty and is not a synthetic cohort (no {MARKER}); "
            "refusing to overwrite it. Point source.* elsewhere or set source.synthetic: false."
        )


def _chunks(total: int) -> list[tuple[int, int, int]]:
    return [
        (i, s, min(CHUNK_SUBJECTS, total - s))
        for i, s in enumerate(range(0, total, CHUNK_SUBJECTS))
    ]


def synthesize_cohort(
    cfg: SynthConfig,
    mimic_iv: Path,
    mimic_iv_ed: Path,
    mimic_iv_ecg: Path,
    ground_truth: Path,
    *,
    workers: int = 0,
) -> SynthSummary:
    """Write a synthetic MIMIC-IV / -ED / -ECG cohort and its latent ground truth.

    Args:
        cfg: size, seed and options.
        mimic_iv, mimic_iv_ed, mimic_iv_ecg: dataset roots to (re)create.
        ground_truth: parquet file with one row per ECG: the latent state and the ECG
            generation parameters (the pipeline never reads it; tests do).
        workers: processes writing the WFDB records while this one generates the tables
            (0: all in this process). The bytes do not depend on it.

    Returns:
        Counts of subjects, stays, ECGs and rows per table.
    """
    roots = {HOSP: Path(mimic_iv), ED: Path(mimic_iv_ed), ECG: Path(mimic_iv_ecg)}
    for root in roots.values():
        _guard_root(root)
    items = load_lab_items()
    summary = SynthSummary()
    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(r)) for k, r in roots.items()}
        gt_tmp = stack.enter_context(atomic_path(ground_truth, suffix=".parquet"))
        for t in tmp.values():
            t.mkdir(parents=True)
            (t / MARKER).write_text("Generated by pipeline.synth (synthetic, not patient data).\n")
        (tmp[ECG] / "files").mkdir()  # exists even without waveforms (a rule output)
        sinks = {name: _Sink(spec.path(tmp[spec.dataset])) for name, spec in TABLES.items()}
        try:
            with WaveformWriter(tmp[ECG], workers if cfg.write_waveforms else 0) as records:
                gt = _generate(cfg, items, sinks, records, summary)
                summary.records_written = records.finish()
            sinks["d_labitems"].write(tables.d_labitems(items))
            sinks["d_icd_diagnoses"].write(tables.d_icd_diagnoses())
        finally:
            for s in sinks.values():
                s.close()
        summary.rows = {name: s.rows for name, s in sinks.items()}
        gt.write_parquet(gt_tmp)
    log.info(
        "synthetic cohort: %d subjects, %d stays, %d ECGs, %d lab events",
        summary.subjects,
        summary.stays,
        summary.ecgs,
        summary.rows["labevents"],
    )
    return summary


def _generate(
    cfg: SynthConfig,
    items: list[LabItem],
    sinks: dict[str, _Sink],
    records: WaveformWriter,
    summary: SynthSummary,
) -> pl.DataFrame:
    ctr = Counters()
    gts = []
    rates = load_coding_rates()
    chunks = _chunks(cfg.total_subjects)
    for index, start, size in progress(chunks, desc="synthetic cohort", unit="chunk"):
        rng = np.random.default_rng([cfg.seed, index])
        subjects = simulate_subjects(rng, start, size)
        stays = assign_stay_ids(rng, simulate_stays(rng, subjects), ctr)
        ecgs = schedule_ecgs(rng, stays, ctr)
        params = ecg_params(ecgs, rng)
        hosp = icd.hospital_codes(rng, stays)
        ed = icd.ed_codes(rng, stays, hosp)
        if cfg.world == "realistic":
            # Its own stream: patients, stays, labs and vitals stay those of the null world.
            world_rng = np.random.default_rng([cfg.seed, index, _WORLD_STREAM])
            params = add_signatures(params, ecgs, world_rng)
            hosp, ed = recode(world_rng, stays, hosp, ed, rates)
        icd9 = stays["icd9"].to_numpy()
        dx = icd.code_rows(stays, hosp, stays["admitted"].to_numpy(), icd9)
        ed_dx = icd.code_rows(stays, ed, np.ones(stays.height, bool), icd9)
        by_row = stays.with_row_index("row").select(
            pl.col("row").cast(pl.Int64), "subject_id", "hadm_id", "stay_id"
        )
        labs = labevents_frame(rng, stays, items, cfg.extra_lab_draws, ctr.specimen, ctr.labevent)
        ctr.specimen += 3 * labs.height
        ctr.labevent += labs.height
        out = {
            "patients": tables.patients(rng, subjects, stays),
            "admissions": tables.admissions(rng, stays),
            "labevents": _labevents_table(labs),
            "omr": tables.omr(rng, stays),
            "diagnoses_icd": tables.finish(dx.join(by_row, on="row"), "diagnoses_icd"),
            "edstays": tables.edstays(rng, stays),
            "triage": tables.triage(rng, stays),
            "vitalsign": tables.vitalsign(rng, stays),
            "diagnosis": tables.finish(ed_dx.join(by_row, on="row"), "diagnosis"),
            "record_list": record_list(ecgs),
            "machine_measurements": machine_measurements(rng, ecgs, params),
        }
        for name, df in out.items():
            sinks[name].write(df)
        if cfg.write_waveforms:
            records.write(rng, ecgs, params)
        summary.subjects += subjects.height
        summary.stays += stays.height
        summary.admissions += out["admissions"].height
        summary.ecgs += ecgs.height
        gts.append(_ground_truth(ecgs, params))
    return pl.concat(gts)


def _ground_truth(ecgs: pl.DataFrame, params: pl.DataFrame) -> pl.DataFrame:
    gt = ecgs.select(_GT_COLUMNS).with_columns(
        tables.ts("ecg_time").alias("ecg_time"),
        pl.when(pl.col("kind") == "outpatient")
        .then(None)
        .otherwise(pl.col("hadm_id"))
        .alias("hadm_id"),
    )
    return gt.rename({"ecg_stay_id": "stay_id"}).join(
        params.drop("af", "bbb", "territory"), on="study_id", how="left", maintain_order="left"
    )


def synthesize_labevents_only(cfg: SynthConfig, out: Path, target_rows: int | None = None) -> int:
    """Write only ``<out>/hosp/labevents.csv.gz`` (and d_labitems) for benchmarks.

    With ``target_rows`` the number of extra outpatient draws per stay is chosen from a
    one-chunk pilot so the table reaches at least that many rows. Streams chunk by chunk
    (bounded memory). Returns the number of labevents rows written.
    """
    items = load_lab_items()
    if target_rows is not None:
        cfg = SynthConfig(
            **{**asdict(cfg), "extra_lab_draws": _extra_draws_for(cfg, items, target_rows)}
        )
    out = Path(out)
    with atomic_path(out / "hosp" / "labevents.csv.gz") as tmp:
        sink = _Sink(tmp.with_suffix(".gz"), compresslevel=1)  # speed over size here
        try:
            ctr = Counters()
            for index, start, size in progress(
                _chunks(cfg.total_subjects), desc="labevents", unit="chunk"
            ):
                rng = np.random.default_rng([cfg.seed, index])
                stays = assign_stay_ids(
                    rng, simulate_stays(rng, simulate_subjects(rng, start, size)), ctr
                )
                labs = labevents_frame(
                    rng, stays, items, cfg.extra_lab_draws, ctr.specimen, ctr.labevent
                )
                ctr.specimen += 3 * labs.height
                ctr.labevent += labs.height
                sink.write(_labevents_table(labs))
        finally:
            sink.close()
        tmp.with_suffix(".gz").rename(tmp)
    with atomic_path(out / "hosp" / "d_labitems.csv.gz") as tmp:
        d = _Sink(tmp.with_suffix(".gz"))
        d.write(tables.d_labitems(items))
        d.close()
        tmp.with_suffix(".gz").rename(tmp)
    return sink.rows


def _labevents_table(labs: pl.DataFrame) -> pl.DataFrame:
    return tables.finish(
        labs.with_columns(
            tables.ts("charttime").alias("charttime"),
            tables.ts("storetime").alias("storetime"),
            pl.col("ref_lower").alias("ref_range_lower"),
            pl.col("ref_upper").alias("ref_range_upper"),
            pl.col("flag").replace("", None),
            pl.col("priority").replace("", None),
            pl.col("order_provider_id").replace("", None),
        ),
        "labevents",
    )


def _extra_draws_for(cfg: SynthConfig, items: list[LabItem], target_rows: int) -> int:
    size = min(CHUNK_SUBJECTS, cfg.total_subjects)
    counts = []
    for extra in (0, 1):
        rng = np.random.default_rng([cfg.seed, 0])
        stays = assign_stay_ids(
            rng, simulate_stays(rng, simulate_subjects(rng, 0, size)), Counters()
        )
        counts.append(labevents_frame(rng, stays, items, extra, 0, 0).height)
    per_subject0, per_draw = counts[0] / size, max(counts[1] - counts[0], 1) / size
    need = target_rows / cfg.total_subjects - per_subject0
    return max(0, math.ceil(need / per_draw * 1.03))
