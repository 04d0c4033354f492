"""ECG / tabular encoders, projector, heads and the config registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.models import (
    ECGEncoder,
    MLPHead,
    Projector,
    TabularEncoder,
    build_ecg_encoder,
    build_tabular_encoder,
    ecg_encoder_config,
)

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


def _small_ecg(**kw: object) -> ECGEncoder:
    torch.manual_seed(0)
    args = {"d_model": 16, "n_layers": 3, "d_state": 4, "dropout": 0.0, "kernel_backend": "torch"}
    return ECGEncoder(**{**args, **kw})


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_ecg_encoder_shapes_and_embed(mode: str) -> None:
    enc = _small_ecg(mode=mode).eval()
    x = torch.randn(5, 12, 250)
    z = enc(x)
    assert z.shape == (5, 16) and enc.out_dim == 16 and len(enc.blocks) == 3
    torch.testing.assert_close(enc.embed(x), z)
    with pytest.raises(ValueError, match="expects"):
        enc(torch.randn(5, 8, 250))


def test_freeze_blocks_leaves_frozen_params_without_grad() -> None:
    enc = _small_ecg()
    enc.freeze_blocks(2)
    enc(torch.randn(4, 12, 50)).square().mean().backward()
    frozen = [
        *enc.input_proj.parameters(),
        *enc.blocks[0].parameters(),
        *enc.blocks[1].parameters(),
    ]
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    assert all(p.requires_grad and p.grad is not None for p in enc.blocks[2].parameters())
    enc.freeze_blocks(0)
    assert all(p.requires_grad for p in enc.parameters())
    with pytest.raises(ValueError, match="k must be"):
        enc.freeze_blocks(4)


def test_ecg_encoder_learns_a_frequency_task() -> None:
    """Real behaviour: a tiny encoder + head separates 2 Hz from 8 Hz sinusoids in a few steps."""
    torch.manual_seed(0)
    enc = _small_ecg(n_layers=1)
    head = MLPHead(enc.out_dim, [], 1)
    t = torch.arange(250) / 100.0
    y = torch.tensor([0.0, 1.0] * 16)
    freq = torch.where(y == 1, 8.0, 2.0)[:, None, None]
    x = torch.sin(2 * torch.pi * freq * t + torch.rand(32, 12, 1) * 6.28)  # (32, 12, 250)
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(enc(x))[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_tabular_encoder_missing_categories() -> None:
    torch.manual_seed(0)
    enc = TabularEncoder(3, [2, 5], hidden=(8, 6), dropout=0.0, cat_embed_dim=4)
    x_cont, x_mask = torch.randn(4, 3), torch.tensor([[1.0, 0, 1]] * 4)
    x_cat = torch.tensor([[0, 0], [1, 5], [2, 0], [0, 3]])  # 0 = missing / unknown
    z = enc(x_cont, x_mask, x_cat)
    assert z.shape == (4, 6) and enc.out_dim == 6 and torch.isfinite(z).all()
    enc.eval()
    changed = x_cat.clone()
    changed[0, 1] = 4  # a known category instead of missing changes the embedding
    assert not torch.allclose(enc(x_cont, x_mask, x_cat)[0], enc(x_cont, x_mask, changed)[0])
    with pytest.raises(ValueError, match=r"column 1 has codes outside 0\.\.5"):
        enc(x_cont, x_mask, torch.tensor([[0, 6]] * 4))


def test_tabular_encoder_without_continuous_or_categorical() -> None:
    only_cont = TabularEncoder(3, [], hidden=(8,))
    no_cat = torch.zeros(4, 0, dtype=torch.long)
    assert only_cont(torch.randn(4, 3), torch.ones(4, 3), no_cat).shape == (4, 8)
    only_cat = TabularEncoder(0, [3], hidden=(8,))
    codes = torch.tensor([[0], [1], [2], [3]])
    assert only_cat(torch.zeros(4, 0), torch.zeros(4, 0), codes).shape == (4, 8)
    with pytest.raises(ValueError, match="no continuous and no categorical"):
        TabularEncoder(0, [])


def test_projector_and_head() -> None:
    assert Projector(16, 32, 8)(torch.randn(5, 16)).shape == (5, 8)
    assert MLPHead(16, [12], 3, dropout=0.1)(torch.randn(5, 16)).shape == (5, 3)
    assert len(MLPHead(16, [], 3).net) == 1  # no hidden layers: a single linear map


def test_registry_builds_from_config_yaml_and_roundtrips() -> None:
    model = yaml.safe_load(CONFIG.read_text())["model"]
    enc = build_ecg_encoder(model["ecg_encoder"])
    assert enc.out_dim == model["ecg_encoder"]["d_model"]
    cfg = json.loads(json.dumps(ecg_encoder_config(enc)))  # JSON-serialisable, saved with weights
    clone = build_ecg_encoder(cfg)
    clone.load_state_dict(enc.state_dict())
    x = torch.randn(2, 12, 100)
    torch.testing.assert_close(clone.eval()(x), enc.eval()(x))
    tab = build_tabular_encoder(model["tabular_encoder"], 4, [3])
    assert tab.out_dim == model["tabular_encoder"]["hidden"][-1]


def test_registry_rejects_unknown_names_and_keys() -> None:
    with pytest.raises(ValueError, match="unknown name 'lstm'; known: s4"):
        build_ecg_encoder({"name": "lstm", "d_model": 8})
    with pytest.raises(ValueError, match=r"model\.ecg_encoder"):
        build_ecg_encoder({"name": "s4", "d_modle": 8})
    with pytest.raises(ValueError, match="known: mlp"):
        build_tabular_encoder({"name": "transformer"}, 3, [])
