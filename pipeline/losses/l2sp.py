"""L2-SP: an L2 pull of fine-tuned weights towards their pre-trained starting point.

Li, Grandvalet and Davoine (2018), "Explicit Inductive Bias for Transfer Learning with
Convolutional Networks" (ICML), eq. (3): instead of shrinking the transferred weights
towards zero (plain weight decay), penalise their distance to the pre-trained values w0,

    Omega(w) = (alpha / 2) * sum_j ||w_j - w0_j||^2,

summed over the transferred (encoder) parameters that train. The new head has no starting
point to be pulled to; the paper gives it a plain L2 (its beta term), which here is the
stage's ordinary weight decay. Used by ``method_regularised`` so stage 2 cannot drift far
from the stage-1 (clinically aligned) encoder.
"""

from __future__ import annotations

import torch
from torch import nn


class L2SP(nn.Module):
    """``(alpha / 2) * sum ||w - w0||^2`` over a module's trainable parameters.

    The reference w0 is a detached copy taken at construction, i.e. build it right after the
    pre-trained weights are loaded and before any optimiser step (and before a resume
    checkpoint overwrites them). Parameters with ``requires_grad=False`` at construction
    (frozen blocks) are left out: they cannot move, so their term would be a constant 0.

    Args:
        module: The transferred module (the ECG encoder) holding the pre-trained weights.
        alpha: Strength of the pull, >= 0; 0 gives a penalty of exactly 0.

    Raises:
        ValueError: If ``alpha`` is negative.
    """

    def __init__(self, module: nn.Module, alpha: float) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"L2-SP alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        # Not submodules or buffers: the pulled parameters stay owned by ``module``, and the
        # reference must not enter the model's state dict (model.safetensors stays as it is).
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.names: tuple[str, ...] = tuple(n for n, _ in named)
        self._params: list[nn.Parameter] = [p for _, p in named]
        self._reference: list[torch.Tensor] = [p.detach().clone() for _, p in named]

    def forward(self) -> torch.Tensor:
        """The penalty, a scalar on the parameters' device (differentiable in them)."""
        if not self._params:
            return torch.zeros(())
        total = sum(
            ((p - w0) ** 2).sum() for p, w0 in zip(self._params, self._reference, strict=True)
        )
        assert isinstance(total, torch.Tensor)
        return 0.5 * self.alpha * total

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, n_tensors={len(self._params)}"
