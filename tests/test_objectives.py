"""The stage-1 objective registry: uniform call, components, kwargs, errors, a short fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.losses import (
    OBJECTIVE_NAMES,
    BarlowTwinsLoss,
    ClipLoss,
    Objective,
    ObjectiveOutput,
    VICRegLoss,
    build_objective,
    objective_kwargs,
)

COMPONENTS = {
    "barlow_twins": ("on_diag", "off_diag"),
    "vicreg": ("invariance", "variance", "covariance"),
    "clip": ("a_to_b", "b_to_a", "scale"),
}


def _pair(seed: int = 0, n: int = 16, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(n, d, generator=g)
    return za, za + 0.5 * torch.randn(n, d, generator=g)


def test_names_are_the_documented_three() -> None:
    assert OBJECTIVE_NAMES == ("barlow_twins", "vicreg", "clip")
    assert set(COMPONENTS) == set(OBJECTIVE_NAMES)


@pytest.mark.parametrize(
    ("name", "kwargs", "direct"),
    [
        ("barlow_twins", {"lambd": 0.05}, BarlowTwinsLoss(lambd=0.05)),
        ("vicreg", {"inv_weight": 3.0, "cov_weight": 0.5}, VICRegLoss(3.0, 25.0, 0.5)),
        ("clip", {"temperature": 0.2}, ClipLoss(0.2)),
    ],
)
def test_uniform_call_matches_the_loss_module(name: str, kwargs: dict, direct: nn.Module) -> None:
    objective = build_objective(name, **kwargs)  # type: ignore[arg-type]
    assert isinstance(objective, Objective)
    assert objective.component_names == COMPONENTS[name]
    za, zb = _pair()
    za.requires_grad_(True)
    out = objective(za, zb)
    assert isinstance(out, ObjectiveOutput)
    ref = direct(za, zb)
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-6)
    assert tuple(out.components) == COMPONENTS[name]
    for key, value in out.components.items():
        assert value.dim() == 0
        assert not value.requires_grad  # logging must not keep the graph alive
        assert value.item() == pytest.approx(getattr(ref, key).item(), rel=1e-6)
    assert out.loss.requires_grad


def test_defaults_differ_from_non_defaults() -> None:
    """The kwargs are really passed on (the test above would pass if they were dropped only
    when defaults coincide)."""
    za, zb = _pair(1)
    assert build_objective("vicreg")(za, zb).loss.item() != pytest.approx(
        build_objective("vicreg", inv_weight=1.0)(za, zb).loss.item(), rel=1e-3
    )
    assert build_objective("barlow_twins")(za, zb).loss.item() == pytest.approx(
        BarlowTwinsLoss()(za, zb).loss.item(), rel=1e-6
    )


def test_kwargs_listing() -> None:
    assert objective_kwargs("barlow_twins") == ("lambd", "eps")
    assert objective_kwargs("vicreg") == ("inv_weight", "var_weight", "cov_weight", "gamma", "eps")
    assert objective_kwargs("clip") == ("temperature", "learnable_temperature", "max_scale")


def test_unknown_name_and_kwargs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown objective 'simclr'.*barlow_twins"):
        build_objective("simclr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\['temperature'\] for objective 'vicreg'.*gamma"):
        build_objective("vicreg", temperature=0.1)
    with pytest.raises(ValueError, match="lambd"):
        build_objective("barlow_twins", lambd=-1.0)  # range errors come from the module


def test_clip_temperature_is_a_trainable_checkpointed_parameter() -> None:
    objective = build_objective("clip")
    names = [n for n, _ in objective.named_parameters()]
    assert names == ["loss_fn.logit_scale"]
    before = objective.state_dict()["loss_fn.logit_scale"].clone()
    opt = torch.optim.SGD(objective.parameters(), lr=0.1)
    objective(*_pair(2)).loss.backward()
    opt.step()
    assert objective.state_dict()["loss_fn.logit_scale"].item() != before.item()
    fresh = build_objective("clip")
    fresh.load_state_dict(objective.state_dict())
    key = "loss_fn.logit_scale"
    assert fresh.state_dict()[key].item() == objective.state_dict()[key].item()
    assert list(build_objective("clip", learnable_temperature=False).parameters()) == []
    assert list(build_objective("vicreg").parameters()) == []


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_each_objective_aligns_two_linear_encoders(name: str) -> None:
    """Two encoders over paired views of the same latent: 60 AdamW steps lower the loss and
    make each view retrieve its partner above chance."""
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(4)
    latent = torch.randn(256, 6, generator=g)
    xa = latent @ torch.randn(6, 10, generator=g) + 0.1 * torch.randn(256, 10, generator=g)
    xb = latent @ torch.randn(6, 7, generator=g) + 0.1 * torch.randn(256, 7, generator=g)
    enc_a, enc_b = nn.Linear(10, 8), nn.Linear(7, 8)
    objective = build_objective(name)  # type: ignore[arg-type]
    params = [*enc_a.parameters(), *enc_b.parameters(), *objective.parameters()]
    opt = torch.optim.AdamW(params, lr=0.02, weight_decay=0.0)
    losses = []
    for step in range(60):
        rows = torch.arange(64) + 64 * (step % 4)
        out = objective(enc_a(xa[rows]), enc_b(xb[rows]))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert sum(losses[-8:]) / 8 < 0.7 * sum(losses[:8]) / 8
    with torch.no_grad():
        za = nn.functional.normalize(enc_a(xa[:64]), dim=1)
        zb = nn.functional.normalize(enc_b(xb[:64]), dim=1)
    top1 = (za @ zb.T).argmax(dim=1).eq(torch.arange(64)).float().mean().item()
    assert top1 > 0.2  # chance is 1/64
