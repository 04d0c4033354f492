"""The fast S4 path (issue 11) computes the same function as the plain-autograd formulation.

Checked against ``pipeline.models.reference`` (channels-first layout, Conv1d pointwise maps,
autograd through torch.fft) on the same modules and weights: outputs and every parameter
gradient in float64; the real-FFT convolution by gradcheck; the dropout masks' distribution;
the eval-mode kernel cache against stale parameters; and a model saved by the previous code
(tests/data, written before the change) loading strictly and giving its recorded outputs.
They run on the ``device`` fixture (tests/conftest.py): CPU by default; S4_TEST_DEVICE=cuda runs
them on a GPU (bench/gpu_check.sh does) and fails, not skips, when there is none.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.models import ECGEncoder, S4Layer
from pipeline.models import reference as ref
from pipeline.models.ops import dropout, fast_fft_length, fft_conv

LEGACY = Path(__file__).parent / "data" / "s4_encoder_layout_v1.safetensors"


def _encoder(
    mode: str, bidirectional: bool, device: torch.device, dropout_p: float = 0.0
) -> ECGEncoder:
    """Float64 encoder, SSM moved away from its initialisation on the CPU, then on ``device``."""
    torch.manual_seed(0)
    enc = ECGEncoder(12, 6, 2, 4, mode, bidirectional, dropout_p, "torch").double()
    with torch.no_grad():
        for block in enc.blocks:
            block.layer.log_dt.uniform_(-2.0, -0.5)
            block.layer.b.add_(0.3 * torch.randn_like(block.layer.b))
    return enc.to(device)


@pytest.mark.parametrize("mode", ["dplr", "diag"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("length", [13, 40])  # 13: FFT length 2 * 15, not the old 2 * 13
def test_fast_path_matches_reference_outputs_and_gradients(
    mode: str, bidirectional: bool, length: int, device: torch.device
) -> None:
    enc = _encoder(mode, bidirectional, device)
    x = torch.randn(3, 12, length, dtype=torch.float64, device=device)
    results = []
    for forward in (enc, lambda t: ref.encoder_forward(enc, t)):
        enc.zero_grad()
        z = forward(x)
        (z.square().sum() + z.sum()).backward()
        results.append((z.detach(), {n: p.grad.clone() for n, p in enc.named_parameters()}))
    (z_fast, g_fast), (z_ref, g_ref) = results
    torch.testing.assert_close(z_fast, z_ref, rtol=1e-10, atol=1e-10)
    assert g_fast.keys() == g_ref.keys() and len(g_fast) == len(list(enc.parameters()))
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-9, atol=1e-10, msg=name)


def test_fft_conv_gradcheck_and_bad_taps(device: torch.device) -> None:
    u = torch.randn(2, 5, 3, dtype=torch.float64, device=device, requires_grad=True)
    kk = torch.randn(3, 12, dtype=torch.float64, device=device, requires_grad=True)
    d = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(fft_conv, (u, kk, d))
    direct = torch.zeros(2, 5, 3, dtype=torch.float64, device=device)
    for t in range(5):  # literal circular convolution of the zero-padded input
        for s in range(5):
            direct[:, t] += u[:, s].detach() * kk[:, (t - s) % 12].detach()
    direct += d.detach() * u.detach()
    torch.testing.assert_close(fft_conv(u, kk, d), direct, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="even n >= 2L"):
        fft_conv(u, kk[:, :9], d)
    assert [fast_fft_length(n) for n in (1, 7, 11, 500, 2000, 2400, 10000)] == [
        2,
        8,
        12,
        512,
        2048,
        2560,
        10240,
    ]


def test_dropout_masks_are_bernoulli_with_inverse_scaling(device: torch.device) -> None:
    x = torch.ones(400, 500, device=device, requires_grad=True)
    torch.manual_seed(1)
    y = dropout(x, 0.2, training=True)
    kept = y != 0
    assert abs(kept.double().mean().item() - 0.8) < 0.005  # 2e5 draws: sd 0.0009
    p_drop = round(0.2 * 2**16) / 2**16  # p on the 2^-16 grid of the 16-bit draws
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p_drop)))
    y.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, y.detach())  # same mask and scale in the backward
    torch.manual_seed(1)
    assert torch.equal(dropout(x, 0.2, training=True), y)  # deterministic under the seed
    assert dropout(x, 0.2, training=False) is x and dropout(x, 0.0, training=True) is x
    assert not dropout(x, 1.0, training=True).any()
    # Masks are independent across elements: channel-wise (tied) masks would fail this.
    rows = kept.double().mean(dim=1)
    assert rows.std().item() < 0.05


def test_dropout_keeps_each_word_of_a_draw_with_probability_1_minus_p() -> None:
    # each int64 draw gives the masks of four neighbouring elements (its four 16-bit words);
    # each must be Bernoulli(1 - p), the words independent, and an element count that is not
    # a multiple of 4 uses part of the last draw
    torch.manual_seed(2)
    for p in (0.1, 0.5, 0.9):
        kept = dropout(torch.ones(4 * 100_000 + 3), p, training=True) != 0
        for lane in range(4):  # 1e5 draws each: sd <= 0.0016
            assert abs(kept[lane::4].double().mean().item() - (1 - p)) < 0.007
        quads = kept[:-3].view(-1, 4).double()
        for a, b in ((0, 1), (1, 2), (2, 3), (0, 3)):
            both = (quads[:, a] * quads[:, b]).mean().item()
            assert abs(both - (1 - p) ** 2) < 0.007  # the words are independent
    x = torch.randn(100_000, dtype=torch.float64)
    torch.manual_seed(3)
    mean = torch.stack([dropout(x, 0.3, training=True) for _ in range(40)]).mean(0)
    assert abs((mean - x).mean().item()) < 0.003  # E[y] = x: the scale matches the grid's p


def test_eval_cache_never_serves_stale_taps(device: torch.device) -> None:
    enc = _encoder("dplr", True, device).eval()
    layer = enc.blocks[0].layer
    x = torch.randn(2, 12, 30, dtype=torch.float64, device=device)

    def check() -> None:
        with torch.no_grad():
            torch.testing.assert_close(enc(x), ref.encoder_forward(enc, x), rtol=0, atol=1e-12)

    check()
    assert len(layer._taps_cache) == 1  # filled by the no-grad eval forward
    cached = next(iter(layer._taps_cache.values()))
    check()
    assert next(iter(layer._taps_cache.values())) is cached  # reused, not recomputed
    with torch.no_grad():
        layer.log_dt.add_(0.05)  # optimiser-style in-place update
    check()
    layer.c.data.mul_(1.5)  # .data bypasses the version counter: caught by value
    check()
    other = _encoder("dplr", True, device)
    with torch.no_grad():
        for block in other.blocks:
            block.layer.im.add_(1.0)
    enc.load_state_dict(other.state_dict())
    check()
    enc.train()
    assert not layer._taps_cache  # train() empties it
    enc.eval()
    z = enc(x)  # grad enabled and parameters trainable: no caching, gradients flow
    z.sum().backward()
    assert not layer._taps_cache and layer.log_dt.grad is not None
    enc.freeze_blocks(2)  # frozen encoder in eval mode (linear probe): cached even with grad
    enc(x)
    assert len(layer._taps_cache) == 1


def test_cache_keeps_lengths_separate(device: torch.device) -> None:
    layer = S4Layer(4, 4, kernel_backend="torch").double().to(device).eval()
    with torch.no_grad():
        for length in (10, 17, 10):
            u = torch.randn(2, 4, length, dtype=torch.float64, device=device)
            torch.testing.assert_close(layer(u), ref.layer_forward(layer, u), rtol=0, atol=1e-12)
    assert sorted(key[0] for key in layer._taps_cache) == [10, 17]


def test_model_saved_by_the_previous_layout_loads_and_matches(device: torch.device) -> None:
    """Weights written by the Conv1d-layout code load strictly and reproduce its outputs.

    The outputs were recorded on a CPU in float32; another device's float32 FFTs and matmuls
    round differently (TF32 is off, see conftest), so CUDA gets a 10x looser tolerance.
    """
    state = load_file(str(LEGACY))
    x, y = state.pop("__input__"), state.pop("__output__")
    enc = ECGEncoder(12, 8, 2, 4, "dplr", True, 0.1, "torch")
    enc.load_state_dict(state)  # strict: same keys and shapes as before
    enc = enc.to(device).eval()
    with torch.no_grad():
        rtol, atol = (1e-5, 1e-6) if device.type == "cpu" else (1e-4, 1e-5)
        torch.testing.assert_close(enc(x.to(device)).cpu(), y, rtol=rtol, atol=atol)
    assert set(enc.state_dict()) == set(state)
