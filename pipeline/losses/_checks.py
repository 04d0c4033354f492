"""Input checks shared by the two-branch losses."""

from __future__ import annotations

import torch


def check_pair(z_a: torch.Tensor, z_b: torch.Tensor, loss: str, min_batch: int, why: str) -> None:
    """Raise a clear error unless ``z_a`` and ``z_b`` are paired (B, D) batches.

    Args:
        z_a: Branch A, expected shape (B, D).
        z_b: Branch B, expected the same shape.
        loss: Name of the loss, for the message.
        min_batch: Smallest B the loss is defined for.
        why: Why that minimum, appended to the message (e.g. "to normalise").

    Raises:
        ValueError: If an input is not 2-D, the shapes differ, or B < ``min_batch``.
    """
    if z_a.dim() != 2 or z_b.dim() != 2:
        raise ValueError(
            f"{loss} expects 2-D inputs (B, D); got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if z_a.shape != z_b.shape:
        raise ValueError(
            f"{loss} branches must have the same shape; got {tuple(z_a.shape)} "
            f"and {tuple(z_b.shape)}"
        )
    if z_a.shape[0] < min_batch:
        raise ValueError(
            f"{loss} needs a batch of at least {min_batch} samples {why}, got {z_a.shape[0]}"
        )
