"""Stochastic ECG augmentations for ECG-only self-supervision (two views of each crop).

The ``ssl_ecg_only`` baseline replaces the tabular branch of stage 1 with a second augmented
view of the same ECG, so that the study can separate "clinical knowledge" from "any
self-supervision". The random crop offset is already drawn by the data loader; the views
here differ by transformations that keep the rhythm and morphology readable to a
cardiologist (cf. the comparison of ECG augmentations in Mehari & Strodthoff 2022,
"Self-supervised representation learning from 12-lead ECG data"):

1. amplitude scaling: one log-uniform factor per record (all leads alike, so the
   inter-lead relations that define the electrical axis survive);
2. additive Gaussian noise (mV), independent per sample;
3. random lead masking: each lead zeroed with a probability (never all 12 of a record);
4. time masking: one contiguous span per record, of random length up to a fraction of the
   crop, zeroed in every lead.

All randomness is drawn on the CPU from the given ``torch.Generator`` and then moved to the
batch's device, so a seed gives the same views on CPU and GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EcgAugmentConfig:
    """Strength of each augmentation (0 or (1, 1) switches one off).

    Attributes:
        scale_range: (low, high) of the per-record amplitude factor, drawn log-uniformly.
        noise_std: Standard deviation of the additive Gaussian noise, in the signal's units
            (mV after sharding).
        lead_mask_prob: Probability that a lead of a record is zeroed.
        time_mask_fraction: Longest zeroed span as a fraction of the crop length.
    """

    scale_range: tuple[float, float] = (0.8, 1.25)
    noise_std: float = 0.05
    lead_mask_prob: float = 0.2
    time_mask_fraction: float = 0.1

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"augment scale_range must satisfy 0 < low <= high, got {low, high}")
        if self.noise_std < 0:
            raise ValueError(f"augment noise_std must be >= 0, got {self.noise_std}")
        if not 0 <= self.lead_mask_prob < 1:
            raise ValueError(f"augment lead_mask_prob must be in [0, 1), got {self.lead_mask_prob}")
        if not 0 <= self.time_mask_fraction < 1:
            raise ValueError(
                f"augment time_mask_fraction must be in [0, 1), got {self.time_mask_fraction}"
            )


def augment(ecg: torch.Tensor, generator: torch.Generator, cfg: EcgAugmentConfig) -> torch.Tensor:
    """One random view of a batch of ECG crops.

    Args:
        ecg: Crops of shape (B, L, T) (records, leads, samples), floating point.
        generator: CPU generator all random draws come from (advanced by the call).
        cfg: Augmentation strengths.

    Returns:
        A new tensor of shape (B, L, T), same dtype and device; the input is not modified.

    Raises:
        ValueError: If ``ecg`` is not a 3-D floating-point tensor.
    """
    if ecg.dim() != 3 or not ecg.is_floating_point():
        raise ValueError(
            f"augment expects a floating (B, leads, samples) batch; got {ecg.dtype} "
            f"of shape {tuple(ecg.shape)}"
        )
    b, n_leads, t = ecg.shape
    low, high = math.log(cfg.scale_range[0]), math.log(cfg.scale_range[1])
    log_scale = low + (high - low) * torch.rand(b, 1, 1, generator=generator)  # (B, 1, 1)
    noise = cfg.noise_std * torch.randn(b, n_leads, t, generator=generator)  # (B, L, T)
    keep_lead = _lead_keep_mask(b, n_leads, cfg.lead_mask_prob, generator)  # (B, L, 1)
    keep_time = _time_keep_mask(b, t, cfg.time_mask_fraction, generator)  # (B, 1, T)

    def dev(x: torch.Tensor) -> torch.Tensor:
        return x.to(device=ecg.device, dtype=ecg.dtype)

    out = ecg * dev(log_scale.exp()) + dev(noise)
    return out * dev(keep_lead) * dev(keep_time)


def two_views(
    ecg: torch.Tensor, generator: torch.Generator, cfg: EcgAugmentConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent random views of the same batch, for the two stage-1 branches.

    Args:
        ecg: Crops of shape (B, L, T).
        generator: CPU generator; the same seed gives the same pair of views.
        cfg: Augmentation strengths (defaults of :class:`EcgAugmentConfig` if None).

    Returns:
        ``(view_a, view_b)``, each (B, L, T).
    """
    cfg = cfg or EcgAugmentConfig()
    return augment(ecg, generator, cfg), augment(ecg, generator, cfg)


def _lead_keep_mask(b: int, n_leads: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """1 for kept leads, 0 for masked ones; a record that would lose every lead keeps all."""
    keep = (torch.rand(b, n_leads, generator=generator) >= p).float()  # (B, L)
    # An all-zero view carries nothing to align; keeping that record intact is the
    # cheapest repair and happens with probability p**L (1e-9 for 12 leads at p = 0.2).
    empty = keep.sum(dim=1, keepdim=True) == 0  # (B, 1)
    return torch.where(empty, torch.ones_like(keep), keep).unsqueeze(-1)  # (B, L, 1)


def _time_keep_mask(b: int, t: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """1 outside, 0 inside one span per record of uniform length in [0, fraction * t]."""
    longest = int(fraction * t)
    length = torch.randint(0, longest + 1, (b, 1), generator=generator)  # (B, 1)
    # Start uniform over the positions where the whole span fits.
    start = (torch.rand(b, 1, generator=generator) * (t - length + 1)).floor()  # (B, 1)
    pos = torch.arange(t).unsqueeze(0)  # (1, T)
    inside = (pos >= start) & (pos < start + length)  # (B, T)
    return (~inside).float().unsqueeze(1)  # (B, 1, T)
