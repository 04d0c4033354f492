"""ECG and tabular encoders, Barlow Twins projector and MLP heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from pipeline.models.ops import dropout
from pipeline.models.s4 import S4Layer, pointwise


class S4Block(nn.Module):
    """Post-norm residual block: x <- LayerNorm(x + Dropout(S4Layer(x))).

    The GELU sits inside ``S4Layer`` (between the SSM and its GLU output mixing, as in the S4
    reference architecture). Post-norm (normalise after the residual sum) follows the S4
    paper's sequence-classification setup; the LayerNorm is over channels at each time step.
    ``forward_lh`` is the same map on the (B, L, H) layout the encoder uses between blocks.
    """

    def __init__(self, d_model: int, dropout: float, **s4_kwargs: Any) -> None:
        super().__init__()
        self.layer = S4Layer(d_model, dropout=dropout, **s4_kwargs)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward_lh(self, x: Tensor) -> Tensor:
        """(B, L, H) -> (B, L, H)."""
        y = x + dropout(self.layer.forward_lh(x), self.dropout.p, self.training)  # (B, L, H)
        return self.norm(y)  # (B, L, H)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, L) -> (B, H, L)."""
        return self.forward_lh(x.transpose(1, 2)).transpose(1, 2)


class ECGEncoder(nn.Module):
    """S4 ECG encoder: pointwise input projection, n post-norm S4 blocks, mean over time.

    Between blocks the activations stay in the (B, L, H) layout (pointwise maps, LayerNorm
    and the FFT convolution along L all work on it without transposes); the input
    projection keeps its Conv1d(in_channels, H, 1) parameter layout so checkpoints load.

    Args:
        in_channels: ECG leads (12).
        d_model: channels H and embedding size.
        n_layers: number of S4 blocks.
        d_state: SSM state size N.
        mode: "dplr" (S4) or "diag" (S4D).
        bidirectional: non-causal (forward + backward) kernels.
        dropout: dropout inside and after each S4 layer.
        kernel_backend: "auto", "torch", "keops" or "naive".
    """

    def __init__(
        self,
        in_channels: int = 12,
        d_model: int = 512,
        n_layers: int = 4,
        d_state: int = 8,
        mode: str = "dplr",
        bidirectional: bool = True,
        dropout: float = 0.2,
        kernel_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "d_model": d_model,
            "n_layers": n_layers,
            "d_state": d_state,
            "mode": mode,
            "bidirectional": bidirectional,
            "dropout": dropout,
            "kernel_backend": kernel_backend,
        }
        self.input_proj = nn.Conv1d(in_channels, d_model, kernel_size=1)
        kw = {"d_state": d_state, "mode": mode, "bidirectional": bidirectional}
        self.blocks = nn.ModuleList(
            S4Block(d_model, dropout, kernel_backend=kernel_backend, **kw) for _ in range(n_layers)
        )
        self.out_dim = d_model

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, L) -> (B, d_model)."""
        if x.dim() != 3 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(
                f"ECGEncoder expects (B, {self.config['in_channels']}, L), got {tuple(x.shape)}"
            )
        h = pointwise(self.input_proj, x.transpose(1, 2))  # (B, L, H)
        for block in self.blocks:
            h = cast(S4Block, block).forward_lh(h)  # (B, L, H)
        return h.mean(dim=1)  # (B, H)

    def embed(self, x: Tensor) -> Tensor:
        """Alias of ``forward``: (B, in_channels, L) -> (B, d_model)."""
        return self(x)

    def freeze_blocks(self, k: int) -> None:
        """Freeze the input projection and the first k blocks; everything else trainable.

        k = 0 freezes nothing. The call sets the state exactly (it also unfreezes), so calling
        it twice with different k is well defined.
        """
        if not 0 <= k <= len(self.blocks):
            raise ValueError(f"freeze_blocks: k must be in [0, {len(self.blocks)}], got {k}")
        self.input_proj.requires_grad_(k == 0)
        for i, block in enumerate(self.blocks):
            block.requires_grad_(i >= k)


def _mlp(in_dim: int, hidden: Sequence[int], dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers), in_dim


class TabularEncoder(nn.Module):
    """MLP over [continuous values, observed masks, categorical embeddings].

    Categorical column i takes codes 0..cat_cardinalities[i], where 0 means missing or unknown
    (its own learned embedding, since missingness carries information) and 1..cardinality are
    the known categories; the embedding table has cardinality + 1 rows.

    Args:
        n_continuous: F continuous features (already imputed) with F observed-indicator masks.
        cat_cardinalities: known categories per categorical column (C columns; may be empty).
        hidden: widths of the Linear-BatchNorm-ReLU-Dropout layers; the last is the output size.
        dropout: dropout per hidden layer.
        cat_embed_dim: embedding size per categorical column.
    """

    def __init__(
        self,
        n_continuous: int,
        cat_cardinalities: Sequence[int],
        hidden: Sequence[int] = (128, 128, 128),
        dropout: float = 0.1,
        cat_embed_dim: int = 8,
    ) -> None:
        super().__init__()
        if n_continuous < 0 or any(c < 1 for c in cat_cardinalities) or not hidden:
            raise ValueError("TabularEncoder: need n_continuous >= 0, cardinalities >= 1, hidden")
        if n_continuous == 0 and not cat_cardinalities:
            raise ValueError("TabularEncoder: no continuous and no categorical features")
        self.n_continuous, self.cat_cardinalities = n_continuous, list(cat_cardinalities)
        self.embeddings = nn.ModuleList(
            nn.Embedding(c + 1, cat_embed_dim) for c in cat_cardinalities
        )
        in_dim = 2 * n_continuous + cat_embed_dim * len(cat_cardinalities)
        self.mlp, self.out_dim = _mlp(in_dim, hidden, dropout)

    def forward(self, x_cont: Tensor, x_mask: Tensor, x_cat: Tensor) -> Tensor:
        """(B, F) float, (B, F) float, (B, C) int64 -> (B, hidden[-1])."""
        n_cat = len(self.cat_cardinalities)
        if x_cont.shape[1] != self.n_continuous or x_mask.shape != x_cont.shape:
            raise ValueError(
                f"TabularEncoder: expected x_cont and x_mask (B, {self.n_continuous}), got "
                f"{tuple(x_cont.shape)} and {tuple(x_mask.shape)}"
            )
        if x_cat.shape != (x_cont.shape[0], n_cat):
            raise ValueError(
                f"TabularEncoder: expected x_cat (B, {n_cat}), got {tuple(x_cat.shape)}"
            )
        for i, card in enumerate(self.cat_cardinalities):
            col = x_cat[:, i]
            if col.numel() and (int(col.min()) < 0 or int(col.max()) > card):
                raise ValueError(
                    f"TabularEncoder: categorical column {i} has codes outside 0..{card}"
                )
        parts = [x_cont, x_mask] + [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))  # (B, hidden[-1])


class Projector(nn.Module):
    """Barlow Twins projector: Linear - BatchNorm1d - ReLU - Linear (Zbontar et al. 2021)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) -> (B, out_dim)."""
        return self.net(x)


class MLPHead(nn.Module):
    """Classification head: (Linear - ReLU - Dropout) per hidden width, then Linear to logits."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = width
        self.net = nn.Sequential(*layers, nn.Linear(in_dim, out_dim))
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) -> (B, out_dim) logits."""
        return self.net(x)
