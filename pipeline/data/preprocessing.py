"""The ECG preprocessing a model was trained with, recorded once and read back at inference.

The shard stage writes its settings (rate, length, lead order, clip, storage type) into the
``index.parquet`` file metadata (key ``ecg_explain.preprocessing``); the supervised stages
add the crop settings and store the result as ``model.json["preprocessing"]``; inference
(:mod:`pipeline.infer`) reads it from there, so it cannot drift from training.

Resampling (documented here because inference must repeat it): every record is clipped to
+-``clip_mv`` and resampled from its own whole rate to ``fs`` with the polyphase filter of
``scipy.signal.resample_poly`` (up/down = the reduced ratio; Kaiser-window FIR, beta 5,
10 zero crossings per side, cutoff 1/max(up, down) of Nyquist), then stored as float16.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipeline.mimic_schema import LEADS

METADATA_KEY = "ecg_explain.preprocessing"
RESAMPLING = "scipy.signal.resample_poly: Kaiser FIR (beta 5), 10 zero crossings per side"
IMPUTATION = (
    "NaN samples linearly interpolated per lead (edges: nearest); all-NaN or flat leads refused"
)


@dataclass(frozen=True)
class Preprocessing:
    """What turns a raw WFDB record into a model input.

    Attributes:
        fs: model sampling rate (Hz) after resampling.
        n_samples: samples per lead after resampling (10 s at ``fs``).
        source_fs, source_samples: nominal record rate and length (the duration).
        leads: lead order of the model's input channels.
        clip_mv: amplitudes clipped to +- this before resampling.
        dtype: storage type the training shards used (inference rounds to it too).
        crop_samples: crop length the encoder saw.
        eval_crops: centred non-overlapping crops whose sigmoid outputs are averaged.
        resampling, imputation: how resampling and NaN handling were done (text).
    """

    fs: int
    n_samples: int
    source_fs: int
    source_samples: int
    clip_mv: float  # no default: the shard stage's setting, never assumed
    leads: tuple[str, ...] = LEADS
    dtype: str = "float16"
    crop_samples: int | None = None
    eval_crops: int | None = None
    resampling: str = RESAMPLING
    imputation: str = IMPUTATION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``leads`` as a list)."""
        return {**asdict(self), "leads": list(self.leads)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "preprocessing") -> Preprocessing:
        """Rebuild from :meth:`to_dict`; ValueError naming a missing or unknown key.

        Every key must be present (:meth:`to_dict` writes them all): a reader that filled
        in a default would silently assume what training did instead of reading it.
        """
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}")
        missing = [k for k in names if k not in d]
        if missing:
            raise ValueError(f"{where}: key(s) {missing} missing")
        for key in ("fs", "n_samples", "source_fs", "source_samples", "clip_mv"):
            if d[key] is None:
                raise ValueError(f"{where}: {key!r} is null")
        return cls(**{**d, "leads": tuple(d["leads"])})

    def check_reproducible(self, where: str = "preprocessing") -> None:
        """Raise unless this code repeats these steps exactly (inference calls it).

        The reader emits :data:`pipeline.mimic_schema.LEADS` in order, rounds to float16 and
        resamples and imputes as :data:`RESAMPLING` / :data:`IMPUTATION` say; a model
        trained otherwise would be scored on inputs unlike its training data.

        Raises:
            ValueError: naming the first key this code does not reproduce.
        """
        ours: dict[str, object] = {
            "leads": LEADS,
            "dtype": "float16",
            "resampling": RESAMPLING,
            "imputation": IMPUTATION,
        }
        for key, value in ours.items():
            if getattr(self, key) != value:
                raise ValueError(
                    f"{where}.{key} is {getattr(self, key)!r}; this reader does {value!r}"
                )

    def with_crops(self, crop_samples: int, eval_crops: int) -> Preprocessing:
        """The shard settings plus the training crop settings."""
        return Preprocessing(
            **{**asdict(self), "crop_samples": crop_samples, "eval_crops": eval_crops}
        )


def index_metadata(prep: Preprocessing) -> dict[bytes, bytes]:
    """Parquet key-value metadata carrying ``prep``."""
    return {METADATA_KEY.encode(): json.dumps(prep.to_dict()).encode()}


def read_index_preprocessing(index: str | Path) -> Preprocessing | None:
    """The preprocessing recorded in a shard ``index.parquet`` (None: not recorded)."""
    meta = pq.read_schema(index).metadata or {}
    raw = meta.get(METADATA_KEY.encode())
    if raw is None:
        return None
    return Preprocessing.from_dict(json.loads(raw), f"{index} metadata")


def training_preprocessing(
    shard_index: str | Path, crop_samples: int, eval_crops: int
) -> dict[str, Any] | None:
    """``model.json["preprocessing"]``: the shard settings plus the crops (None: unknown)."""
    prep = read_index_preprocessing(shard_index)
    return None if prep is None else prep.with_crops(crop_samples, eval_crops).to_dict()


def crop_starts(length: int, crop: int, n: int) -> np.ndarray:
    """Starts of ``n`` non-overlapping crops, centred in a record of ``length`` samples."""
    if n * crop > length:
        raise ValueError(f"record of {length} samples is too short for {n} crops of {crop}")
    offset = (length - n * crop) // 2
    return offset + crop * np.arange(n)
