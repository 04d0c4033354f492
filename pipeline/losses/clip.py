"""CLIP-style symmetric InfoNCE loss between two embedding branches."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.float32 import in_float32
from pipeline.losses._checks import check_pair


class ClipOutput(NamedTuple):
    """Result of :class:`ClipLoss`.

    Attributes:
        loss: Scalar total, ``(a_to_b + b_to_a) / 2``.
        a_to_b: Scalar cross-entropy of each row of A retrieving its partner among the Bs.
        b_to_a: Scalar cross-entropy of each row of B retrieving its partner among the As.
        scale: Scalar logit scale ``1 / tau`` actually used (after clamping).
    """

    loss: torch.Tensor
    a_to_b: torch.Tensor
    b_to_a: torch.Tensor
    scale: torch.Tensor


class ClipLoss(nn.Module):
    """Symmetric InfoNCE loss of CLIP (Radford et al. 2021).

    From "Learning Transferable Visual Models From Natural Language Supervision" (ICML
    2021), Figure 3: both branches are L2-normalised, the B x B cosine-similarity matrix is
    scaled by ``1 / tau``,

        logits = (z_a / ||z_a||) (z_b / ||z_b||)^T / tau          # (B, B)
        loss = (CE(logits, diag) + CE(logits^T, diag)) / 2,

    i.e. the cross-entropy of every row picking its own partner against the other B - 1
    samples of the batch, averaged over both directions. The temperature is learned as a
    log-scale ``log(1 / tau)`` initialised to ``log(1 / 0.07)``; the paper clips it so that
    the logits are never scaled by more than 100, which stops training instability.

    Args:
        temperature: Initial (or, if not learnable, fixed) tau (paper: 0.07).
        learnable_temperature: Learn ``log(1 / tau)`` as a parameter (paper) or keep it
            fixed as a buffer.
        max_scale: Upper bound on ``1 / tau`` (paper: 100).

    Example:
        >>> loss_fn = ClipLoss()
        >>> out = loss_fn(torch.randn(32, 16), torch.randn(32, 16))
        >>> out.loss.backward()  # doctest: +SKIP
    """

    logit_scale: torch.Tensor

    def __init__(
        self,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        max_scale: float = 100.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"CLIP temperature must be positive, got {temperature}")
        if max_scale <= 0:
            raise ValueError(f"CLIP max_scale must be positive, got {max_scale}")
        if 1.0 / temperature > max_scale:
            raise ValueError(
                f"CLIP temperature {temperature} gives a logit scale {1.0 / temperature:.4g} "
                f"above max_scale {max_scale}"
            )
        self.learnable_temperature = bool(learnable_temperature)
        self.max_scale = float(max_scale)
        init = torch.tensor(math.log(1.0 / temperature))
        if self.learnable_temperature:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)

    def scale(self) -> torch.Tensor:
        """Current ``1 / tau``, clamped to ``max_scale`` (no gradient past the clamp)."""
        return self.logit_scale.exp().clamp(max=self.max_scale)

    # float32 under autocast: logits up to 100 (1 / tau) feed a log-softmax over B; in
    # bfloat16 their spacing near 100 is 0.5; see pipeline.float32.
    @in_float32
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> ClipOutput:
        """Compute the loss between two batches of embeddings.

        Args:
            z_a: Embeddings of branch A, shape (B, D).
            z_b: Embeddings of branch B, shape (B, D); row i is the same sample as in z_a.

        Returns:
            A :class:`ClipOutput` with the total loss, both directions and the scale.

        Raises:
            ValueError: If the inputs are not 2-D, differ in shape, or the batch is empty.
        """
        check_pair(z_a, z_b, "CLIP loss", 1, "(an empty batch has no pairs)")
        scale = self.scale().to(z_a.dtype)
        a = F.normalize(z_a, dim=1)  # (B, D)
        b = F.normalize(z_b, dim=1)  # (B, D)
        logits = scale * (a @ b.T)  # (B, B): row i = A_i against every B_j
        target = torch.arange(logits.shape[0], device=logits.device)  # (B,)
        a_to_b = F.cross_entropy(logits, target)
        b_to_a = F.cross_entropy(logits.T, target)
        return ClipOutput(loss=(a_to_b + b_to_a) / 2, a_to_b=a_to_b, b_to_a=b_to_a, scale=scale)

    def extra_repr(self) -> str:
        return f"learnable_temperature={self.learnable_temperature}, max_scale={self.max_scale}"
