"""The teacher targets of a distilled model: a trained model's logits for the training records.

The teacher (``ModelSpec.teacher``, the multimodal classifier for ``distilled``) predicts
every training record once, before the student trains, from the same shards and its own
tabular inputs. Its crop-averaged probabilities, the quantity the pipeline evaluates, are
turned back into logits for :class:`pipeline.losses.DistillationLoss`, which applies the
temperature; every random training crop of a record gets the record's teacher target (the
teacher's tabular half does not depend on the crop). The teacher's predictions on its own
training records are more confident than on new ones; the temperature softens them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.train.engine import TrainConfig
from pipeline.train.model import predict_model

log = logging.getLogger(__name__)

# Probabilities are clipped before the logit: a saturated teacher (p = 1.0 in float32)
# would otherwise give an infinite target.
PROB_CLIP = 1e-6


def teacher_logits(
    teacher_dir: Path,
    shard_index: Path,
    ids: np.ndarray,
    names: list[str],
    train_cfg: TrainConfig,
    *,
    features: Path | None,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Logits (N, K) of the saved model ``teacher_dir`` for ``ids``, columns in ``names`` order.

    Raises:
        ValueError: If the teacher's labels are not ``names`` (it was trained on another
            label manifest), naming the first difference.
    """
    meta = json.loads((Path(teacher_dir) / "model.json").read_text())
    labels = list(meta["labels"])
    if labels != names:
        diff = next(
            (i for i, (a, b) in enumerate(zip(labels, names, strict=False)) if a != b),
            min(len(labels), len(names)),
        )
        raise ValueError(
            f"{teacher_dir}/model.json: the teacher's {len(labels)} labels are not the "
            f"student's {len(names)} (first difference at position {diff}); retrain it on "
            "the same label manifest"
        )
    prob = predict_model(
        Path(teacher_dir),
        Path(shard_index),
        ids,
        train_cfg,
        features=features,
        batch_size=batch_size,
        device=device,
    )
    p = np.clip(prob.astype(np.float64), PROB_CLIP, 1 - PROB_CLIP)
    logits = np.log(p) - np.log1p(-p)  # (N, K)
    log.info(
        "teacher %s: %d records x %d labels, mean probability %.3f",
        Path(teacher_dir).name,
        *logits.shape,
        float(prob.mean()),
    )
    return logits.astype(np.float32)
