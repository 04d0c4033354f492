"""VICReg variance-invariance-covariance loss between two embedding branches."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from pipeline.float32 import in_float32
from pipeline.losses._checks import check_pair


class VICRegOutput(NamedTuple):
    """Result of :class:`VICRegLoss`.

    The three terms are returned unweighted (as the paper defines them), so their scale is
    comparable across runs with different coefficients; ``loss`` is their weighted sum.

    Attributes:
        loss: Scalar total, ``inv_weight * invariance + var_weight * variance
            + cov_weight * covariance``.
        invariance: Scalar ``s(Z, Z')``, the element-wise mean squared error.
        variance: Scalar ``v(Z) + v(Z')``, the std hinge summed over both branches.
        covariance: Scalar ``c(Z) + c(Z')``, the off-diagonal covariance penalty summed over
            both branches.
    """

    loss: torch.Tensor
    invariance: torch.Tensor
    variance: torch.Tensor
    covariance: torch.Tensor


def variance_term(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """Hinge on the regularised std of each dimension: ``v(Z)`` of the paper.

    ``v(Z) = (1/D) sum_j max(0, gamma - sqrt(Var(z^j) + eps))`` with the unbiased batch
    variance. The eps keeps the gradient of the square root bounded near zero variance,
    which is exactly the collapsed state the term must push away from.

    Args:
        z: One branch, shape (B, D), B >= 2.
        gamma: Target standard deviation.
        eps: Added to the variance before the square root.

    Returns:
        A scalar tensor.
    """
    std = torch.sqrt(z.var(dim=0) + eps)  # (D,)
    return torch.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances over D: ``c(Z)`` of the paper.

    ``C(Z) = (1/(B-1)) sum_i (z_i - z_bar)(z_i - z_bar)^T`` and
    ``c(Z) = (1/D) sum_{i != j} C(Z)_ij^2``.

    Args:
        z: One branch, shape (B, D), B >= 2.

    Returns:
        A scalar tensor.
    """
    batch, dim = z.shape
    zc = z - z.mean(dim=0, keepdim=True)  # (B, D)
    cov = zc.T @ zc / (batch - 1)  # (D, D)
    # Explicit mask, not "all squares minus diagonal squares": that difference cancels badly
    # in float32 when the variances dominate the covariances.
    off_mask = ~torch.eye(dim, dtype=torch.bool, device=z.device)  # (D, D)
    return cov[off_mask].pow(2).sum() / dim


class VICRegLoss(nn.Module):
    """VICReg loss of Bardes, Ponce and LeCun (2022).

    From "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
    Learning" (ICLR 2022), eq. (6) and Algorithm 1:

        loss = lambda * s(Z, Z') + mu * [v(Z) + v(Z')] + nu * [c(Z) + c(Z')]

    with the invariance ``s`` the mean squared error between paired rows (averaged over the
    B x D elements, as in the paper's Algorithm 1, which the lambda = mu = 25, nu = 1
    defaults were tuned with), the variance hinge ``v`` (:func:`variance_term`) and the
    covariance penalty ``c`` (:func:`covariance_term`) applied to each branch separately.
    Unlike Barlow Twins nothing is normalised, so the branches may differ in scale; the
    variance term alone prevents collapse, the covariance term decorrelates dimensions.

    Args:
        inv_weight: lambda, weight of the invariance term (paper: 25).
        var_weight: mu, weight of the variance term (paper: 25).
        cov_weight: nu, weight of the covariance term (paper: 1).
        gamma: Target standard deviation of each dimension (paper: 1).
        eps: Added to the variance before the square root (paper: 1e-4).

    Example:
        >>> loss_fn = VICRegLoss()
        >>> out = loss_fn(torch.randn(32, 16), torch.randn(32, 16))
        >>> out.loss.backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        inv_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        for name, value in (
            ("inv_weight", inv_weight),
            ("var_weight", var_weight),
            ("cov_weight", cov_weight),
            ("eps", eps),
        ):
            if value < 0:
                raise ValueError(f"VICReg {name} must be non-negative, got {value}")
        if gamma <= 0:
            raise ValueError(f"VICReg gamma must be positive, got {gamma}")
        self.inv_weight = float(inv_weight)
        self.var_weight = float(var_weight)
        self.cov_weight = float(cov_weight)
        self.gamma = float(gamma)
        self.eps = float(eps)

    # float32 under autocast: batch variances near the collapse hinge and D x D covariances
    # (sums over B of small products); see pipeline.float32.
    @in_float32
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> VICRegOutput:
        """Compute the loss between two batches of embeddings.

        Args:
            z_a: Embeddings of branch A, shape (B, D).
            z_b: Embeddings of branch B, shape (B, D); row i is the same sample as in z_a.

        Returns:
            A :class:`VICRegOutput` with the total loss and its three unweighted terms.

        Raises:
            ValueError: If the inputs are not 2-D, differ in shape, or B < 2 (the unbiased
                batch variance is undefined for a single sample).
        """
        check_pair(z_a, z_b, "VICReg", 2, "for the batch variance")
        inv = (z_a - z_b).pow(2).mean()
        var = variance_term(z_a, self.gamma, self.eps) + variance_term(z_b, self.gamma, self.eps)
        cov = covariance_term(z_a) + covariance_term(z_b)
        loss = self.inv_weight * inv + self.var_weight * var + self.cov_weight * cov
        return VICRegOutput(loss=loss, invariance=inv, variance=var, covariance=cov)

    def extra_repr(self) -> str:
        return (
            f"inv_weight={self.inv_weight}, var_weight={self.var_weight}, "
            f"cov_weight={self.cov_weight}, gamma={self.gamma}, eps={self.eps}"
        )
