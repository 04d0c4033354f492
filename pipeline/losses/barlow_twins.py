"""Barlow Twins redundancy-reduction loss between two embedding branches."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from pipeline.float32 import in_float32
from pipeline.losses._checks import check_pair


class BarlowTwinsOutput(NamedTuple):
    """Result of :class:`BarlowTwinsLoss`.

    Attributes:
        loss: Scalar total loss, ``on_diag + off_diag``.
        on_diag: Scalar invariance term ``sum_i (1 - C_ii)^2``.
        off_diag: Scalar redundancy-reduction term, already multiplied by lambda.
    """

    loss: torch.Tensor
    on_diag: torch.Tensor
    off_diag: torch.Tensor


def _standardise(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Batch-normalise one branch along the batch dimension, without affine parameters.

    Uses the biased batch variance, as ``nn.BatchNorm1d(affine=False)`` does in training mode.
    """
    mean = z.mean(dim=0, keepdim=True)  # (1, D)
    var = z.var(dim=0, unbiased=False, keepdim=True)  # (1, D)
    return (z - mean) / torch.sqrt(var + eps)  # (B, D)


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss of Zbontar et al. (2021).

    From "Barlow Twins: Self-Supervised Learning via Redundancy Reduction" (ICML 2021):
    each branch is standardised on its own along the batch, the cross-correlation matrix
    ``C = z_a_n^T z_b_n / B`` (D x D) is computed, and

        loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2.

    The first term makes the two views agree per dimension (invariance), the second
    decorrelates the dimensions (redundancy reduction). The branches are normalised
    separately: normalising the concatenated batch jointly mixes the statistics of the two
    modalities, so C is no longer a correlation matrix (a known bug in one popular library).

    Args:
        lambd: Weight of the off-diagonal term (the paper uses about 5e-3).
        eps: Added to the batch variance before the square root, for numerical stability.

    Example:
        >>> loss_fn = BarlowTwinsLoss(lambd=5e-3)
        >>> out = loss_fn(torch.randn(32, 16), torch.randn(32, 16))
        >>> out.loss.backward()  # doctest: +SKIP
    """

    def __init__(self, lambd: float = 5e-3, eps: float = 1e-5) -> None:
        super().__init__()
        if lambd < 0:
            raise ValueError(f"lambd must be non-negative, got {lambd}")
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        self.lambd = float(lambd)
        self.eps = float(eps)

    # float32 under autocast: standardised columns and C = z_a^T z_b / B with C_ii ~ 1
    # beside C_ij ~ 0.01 (bfloat16 keeps 3 digits); see pipeline.float32.
    @in_float32
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> BarlowTwinsOutput:
        """Compute the loss between two batches of embeddings.

        Args:
            z_a: Embeddings of branch A, shape (B, D).
            z_b: Embeddings of branch B, shape (B, D); row i is the same sample as in z_a.

        Returns:
            A :class:`BarlowTwinsOutput` with the total loss and its two terms.

        Raises:
            ValueError: If the inputs are not 2-D, differ in shape, or B < 2 (the batch
                variance is undefined for a single sample).
        """
        check_pair(z_a, z_b, "Barlow Twins", 2, "to normalise")
        batch = z_a.shape[0]
        za_n = _standardise(z_a, self.eps)  # (B, D)
        zb_n = _standardise(z_b, self.eps)  # (B, D)
        c = za_n.T @ zb_n / batch  # (D, D)
        diag = torch.diagonal(c)  # (D,)
        on_diag = (1.0 - diag).pow(2).sum()
        # An explicit mask rather than "all squares minus diagonal squares": the subtraction
        # cancels catastrophically in float32 when C_ii ~ 1 and the C_ij are small.
        off_mask = ~torch.eye(c.shape[0], dtype=torch.bool, device=c.device)  # (D, D)
        off_diag = self.lambd * c[off_mask].pow(2).sum()
        return BarlowTwinsOutput(loss=on_diag + off_diag, on_diag=on_diag, off_diag=off_diag)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}, eps={self.eps}"
