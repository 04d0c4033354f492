"""Batch scoring: many records -> one table of diagnosis and lab probabilities.

Records are read and preprocessed in batches (:mod:`pipeline.infer.records`) and scored
by a torch or ONNX scorer (:mod:`pipeline.infer.bundle`). The output (parquet, or CSV by
suffix) has one row per record in input order: ``record`` (the user's key), ``error``
(the reason a record could not be read, else null), ``warning`` (the plausibility
warnings of :mod:`pipeline.data.plausibility`, ``; ``-separated, else null),
``derived_leads`` (leads computed from I and II because the file stored only 8, else
null), ``dx_<code>`` and ``lab_<target>`` probabilities and, with ``embedding``,
``emb_<i>`` (the crop-averaged encoder output).

Resumable: the list is cut into fixed chunks of ``chunk_records``; each finished chunk is
written atomically to ``.<out>.parts/part_<k>.parquet`` (the done list), so a killed run
re-started with the same arguments scores only the missing chunks. A fingerprint of the
record keys, the model (model.json and the file the backend scores with), the backend and
the settings guards the parts: any change starts afresh (torch and ONNX agree to ~1e-6,
not bit for bit, so parts of one backend are never mixed into a table of the other).
The parts are merged into ``out`` (atomically) and removed at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.infer.bundle import BACKENDS, ONNX_FILE, WEIGHTS_FILE, Bundle, Scorer
from pipeline.infer.records import RecordRef, load_batch
from pipeline.io import atomic_path, file_sha256, write_text_atomic
from pipeline.logs import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    """Batch scoring settings.

    Attributes:
        batch_size: records per model call.
        chunk_records: records per resumable part file.
        embedding: add the ``emb_<i>`` columns.
        backend: the scorer's backend ("torch" or "onnx"; part of the resume fingerprint).
    """

    batch_size: int = 64
    chunk_records: int = 4096
    embedding: bool = False
    backend: str = "torch"

    def __post_init__(self) -> None:
        for key in ("batch_size", "chunk_records"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")


@dataclass(frozen=True)
class PredictSummary:
    """What a run did (counts only)."""

    n_records: int
    n_scored: int
    n_failed: int
    n_chunks_resumed: int
    out: Path
    n_warned: int = 0


def columns(bundle: Bundle, n_embed: int = 0) -> list[str]:
    """Probability (and embedding) column names, in output order."""
    return (
        [f"dx_{c}" for c in bundle.diagnoses]
        + [f"lab_{t}" for t in bundle.labs]
        + [f"emb_{i}" for i in range(n_embed)]
    )


def embedding_size(bundle: Bundle) -> int:
    """Width of the embedding output (the encoder's ``d_model``)."""
    return int(bundle.meta["ecg_encoder"]["d_model"])


def score_chunk(
    refs: Sequence[RecordRef], bundle: Bundle, scorer: Scorer, cfg: PredictConfig
) -> pl.DataFrame:
    """One chunk's rows: every record of ``refs``, unreadable ones with their reason."""
    n_emb = embedding_size(bundle) if cfg.embedding else 0
    names = columns(bundle, n_emb)
    values = np.full((len(refs), len(names)), np.nan, np.float32)
    text: dict[str, list[str | None]] = {
        k: [None] * len(refs) for k in ("error", "warning", "derived_leads")
    }
    for start in range(0, len(refs), cfg.batch_size):
        batch = refs[start : start + cfg.batch_size]
        loaded = load_batch(batch, bundle.prep)
        for i, reason in loaded.errors.items():
            text["error"][start + i] = reason
        for i, warning in loaded.warnings.items():
            text["warning"][start + i] = "; ".join(warning)
        for i, leads in loaded.derived.items():
            text["derived_leads"][start + i] = ",".join(leads)
        if loaded.ok:
            out = scorer(loaded.x)
            keep = [out["diagnoses"], out["labs"]] + ([out["embedding"]] if n_emb else [])
            values[[start + i for i in loaded.ok]] = np.concatenate(keep, axis=1)
    keys = pl.DataFrame(
        {"record": [r.key for r in refs], **text},
        schema={k: pl.Utf8 for k in ("record", *text)},
    )
    return keys.hstack(pl.DataFrame(values, schema=names, orient="row").get_columns())


def _fingerprint(refs: Sequence[RecordRef], bundle: Bundle, cfg: PredictConfig) -> str:
    h = hashlib.sha256()
    for r in refs:
        h.update(f"{r.key}\0{r.spec}\0".encode())  # --fs / --leads change array records
    h.update((bundle.model_dir / "model.json").read_bytes())
    scored_by = ONNX_FILE if cfg.backend == "onnx" else WEIGHTS_FILE
    h.update(file_sha256(bundle.model_dir / scored_by).encode())  # streamed, not loaded
    h.update(json.dumps([cfg.chunk_records, cfg.embedding, cfg.backend]).encode())
    return h.hexdigest()


def _parts_dir(out: Path, fingerprint: str) -> Path:
    """The part-file folder for ``out``; emptied when it belongs to another run."""
    parts = out.with_name(f".{out.name}.parts")
    stamp = parts / "fingerprint"
    if parts.is_dir() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        log.info(
            "%s: parts of a different run (records, model, backend or settings) removed", parts
        )
        shutil.rmtree(parts)
    if not parts.is_dir():
        parts.mkdir(parents=True)
        write_text_atomic(stamp, fingerprint)
    return parts


def _write(frame: pl.DataFrame, out: Path) -> None:
    with atomic_path(out, suffix=out.suffix) as tmp:
        if out.suffix.lower() == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)


def predict_records(
    refs: Sequence[RecordRef],
    bundle: Bundle,
    scorer: Scorer,
    out: Path,
    cfg: PredictConfig = PredictConfig(),
) -> PredictSummary:
    """Score ``refs`` into ``out`` (.parquet or .csv), resuming from finished chunks.

    Raises:
        ValueError: ``out`` is neither .parquet nor .csv.
    """
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"{out}: output must end in .parquet or .csv")
    parts = _parts_dir(out, _fingerprint(refs, bundle, cfg))
    chunks = [refs[i : i + cfg.chunk_records] for i in range(0, len(refs), cfg.chunk_records)]
    todo = [k for k in range(len(chunks)) if not (parts / f"part_{k:06d}.parquet").is_file()]
    resumed = len(chunks) - len(todo)
    if resumed:
        log.info("resuming: %d of %d chunk(s) already scored", resumed, len(chunks))
    flat = (ref for k in todo for ref in chunks[k])
    bar = progress(flat, desc="predict", total=sum(len(chunks[k]) for k in todo), unit="rec")
    for k in todo:  # the bar pulls records as the chunks consume them
        frame = score_chunk(list(islice(bar, len(chunks[k]))), bundle, scorer, cfg)
        with atomic_path(parts / f"part_{k:06d}.parquet", suffix=".parquet") as tmp:
            frame.write_parquet(tmp)
    frames = [pl.read_parquet(parts / f"part_{k:06d}.parquet") for k in range(len(chunks))]
    table = pl.concat(frames) if frames else score_chunk([], bundle, scorer, cfg)  # empty list
    _write(table, out)
    shutil.rmtree(parts)
    n_failed = int(table["error"].is_not_null().sum())
    n_warned = int(table["warning"].is_not_null().sum())
    return PredictSummary(len(refs), len(refs) - n_failed, n_failed, resumed, out, n_warned)
