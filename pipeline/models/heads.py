"""Input normalisation of the supervised heads.

The S4 encoder's embedding is a time-mean of layer-normalised activations: on the default
cohort every channel carries a large constant offset (mean |mu| about 0.7) and varies
little between records (sd about 0.1). A head on raw embeddings then sees nearly constant
inputs and its gradients towards the discriminative directions are ~100x too small, so it
sits at the label prior for many epochs, while a logistic regression on standardised
embeddings does well. Standardising the head's input (batch statistics in training,
running statistics at inference, no affine part: the next linear layer scales) removes
that handicap for every model alike (cf. the BatchNorm before the linear probe of MAE,
He et al. 2022).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EmbeddingNorm(nn.Module):
    """BatchNorm over the last dimension of (..., D) inputs, without affine parameters.

    Leading dimensions are flattened, so (B, D) training batches and (B, K, D) crop stacks
    at evaluation are normalised alike.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., D)."""
        if self.training:
            return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        # Inference with the running statistics as plain broadcasting ops (what eval-mode
        # batch norm computes): no reshape, so ONNX export sees a fixed channel size.
        mean, var = self.bn.running_mean, self.bn.running_var
        assert mean is not None and var is not None  # track_running_stats is on
        return (x - mean) * torch.rsqrt(var + self.bn.eps)


def normalised(head: nn.Module, in_dim: int) -> nn.Sequential:
    """``head`` behind an :class:`EmbeddingNorm` of its ``in_dim`` inputs."""
    return nn.Sequential(EmbeddingNorm(in_dim), head)
