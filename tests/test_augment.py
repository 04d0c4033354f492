"""ECG two-view augmentation: shapes, seeding, each transformation on its own, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from pipeline.train.augment import EcgAugmentConfig, augment, two_views

# Every augmentation switched off; each test turns one on with dataclasses.replace.
OFF = EcgAugmentConfig(
    scale_range=(1.0, 1.0), noise_std=0.0, lead_mask_prob=0.0, time_mask_fraction=0.0
)


def _ecg(
    b: int = 6, leads: int = 12, t: int = 250, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, leads, t, generator=g, dtype=dtype).clamp(-3, 3)


def test_shapes_dtype_no_nan_and_input_untouched() -> None:
    ecg = _ecg()
    before = ecg.clone()
    for dtype in (torch.float32, torch.float64):
        a, b = two_views(ecg.to(dtype), torch.Generator().manual_seed(1))
        for view in (a, b):
            assert view.shape == ecg.shape
            assert view.dtype == dtype
            assert torch.isfinite(view).all()
    assert torch.equal(ecg, before)


def test_same_seed_same_views_and_views_differ() -> None:
    ecg = _ecg()
    a1, b1 = two_views(ecg, torch.Generator().manual_seed(7))
    a2, b2 = two_views(ecg, torch.Generator().manual_seed(7))
    assert torch.equal(a1, a2)
    assert torch.equal(b1, b2)
    assert not torch.allclose(a1, b1)  # the two branches see different views
    a3, _ = two_views(ecg, torch.Generator().manual_seed(8))
    assert not torch.allclose(a1, a3)  # another seed, other views
    assert not torch.allclose(a1, ecg)


def test_scaling_is_one_factor_per_record_within_range() -> None:
    ecg = _ecg(b=200).abs() + 0.1  # no zeros to divide by
    cfg = EcgAugmentConfig(
        scale_range=(0.5, 2.0), noise_std=0.0, lead_mask_prob=0.0, time_mask_fraction=0.0
    )
    ratio = augment(ecg, torch.Generator().manual_seed(2), cfg) / ecg  # (B, L, T)
    per_record = ratio[:, 0, 0]
    assert torch.allclose(ratio, per_record[:, None, None].expand_as(ratio), rtol=1e-5)
    assert per_record.min() >= 0.5 - 1e-6
    assert per_record.max() <= 2.0 + 1e-6
    # Log-uniform: the log-factors average to ~0 over 200 records (sd of the mean ~0.03).
    assert abs(per_record.log().mean().item()) < 0.12
    assert per_record.std().item() > 0.1  # really random


def test_noise_has_the_configured_std() -> None:
    ecg = _ecg()
    cfg = replace(OFF, noise_std=0.05)
    resid = augment(ecg, torch.Generator().manual_seed(3), cfg) - ecg
    assert resid.std().item() == pytest.approx(0.05, rel=0.05)
    assert abs(resid.mean().item()) < 0.005


def test_lead_masking_zeroes_whole_leads_never_all() -> None:
    ecg = _ecg(b=400, t=50).abs() + 0.1
    cfg = replace(OFF, lead_mask_prob=0.3)
    view = augment(ecg, torch.Generator().manual_seed(4), cfg)
    zero = view == 0
    lead_zero = zero.all(dim=2)  # (B, L)
    assert torch.equal(zero.any(dim=2), lead_zero)  # a lead is masked entirely or not at all
    assert torch.equal(view[~lead_zero], ecg[~lead_zero])  # the others are untouched
    assert lead_zero.float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert not lead_zero.all(dim=1).any()
    # Near-certain masking: the repair keeps whole records instead of emptying them.
    almost = replace(OFF, lead_mask_prob=0.999)
    view = augment(ecg[:20, :2], torch.Generator().manual_seed(5), almost)
    assert (view != 0).any(dim=(1, 2)).all()


@pytest.mark.parametrize("fraction", [0.2, 0.9])
def test_time_mask_is_one_contiguous_span_in_all_leads(fraction: float) -> None:
    ecg = _ecg(b=300, t=100).abs() + 0.1
    cfg = replace(OFF, time_mask_fraction=fraction)
    view = augment(ecg, torch.Generator().manual_seed(6), cfg)
    zero = view == 0  # (B, L, T)
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same span in every lead
    lengths = []
    for row in zero[:, 0]:
        idx = row.nonzero().flatten()
        if len(idx):
            assert idx.max() - idx.min() + 1 == len(idx)  # contiguous
        lengths.append(len(idx))
    longest = round(100 * fraction)
    assert max(lengths) <= longest
    assert max(lengths) >= 0.75 * longest  # lengths up to the bound do occur
    # Uniform on 0..longest and never cut off by the end of the crop: mean longest / 2
    # (sd of the mean about longest / 60 over 300 records).
    assert sum(lengths) / len(lengths) == pytest.approx(longest / 2, abs=longest / 15)


def test_all_off_is_the_identity() -> None:
    ecg = _ecg()
    cfg = OFF
    assert torch.equal(augment(ecg, torch.Generator().manual_seed(9), cfg), ecg)


def test_bad_inputs_raise_clear_errors() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="leads, samples"):
        augment(torch.randn(12, 250), g, EcgAugmentConfig())
    with pytest.raises(ValueError, match="floating"):
        augment(torch.ones(2, 12, 250, dtype=torch.int64), g, EcgAugmentConfig())
    with pytest.raises(ValueError, match="scale_range"):
        EcgAugmentConfig(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="lead_mask_prob"):
        EcgAugmentConfig(lead_mask_prob=1.0)
    with pytest.raises(ValueError, match="time_mask_fraction"):
        EcgAugmentConfig(time_mask_fraction=math.inf)
    with pytest.raises(ValueError, match="noise_std"):
        EcgAugmentConfig(noise_std=-0.1)
