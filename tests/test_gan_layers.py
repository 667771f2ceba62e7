"""Component tests for baselines/_gan_layers.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from baselines._gan_layers import (
    AdaConfig,
    AdaptiveAugment,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    ModulatedConv2d,
    PixelNorm,
    augment,
    gradient_penalty,
    r1_penalty,
)


def test_equalized_conv_runtime_weight_is_he_scaled():
    torch.manual_seed(0)
    conv = EqualizedConv2d(5, 7, 3)
    fan_in = 5 * 3 * 3
    expected = conv.weight * math.sqrt(2.0 / fan_in)
    assert torch.allclose(conv.runtime_weight(), expected)
    x = torch.randn(2, 5, 6, 6)
    ref = F.conv2d(x, expected, conv.bias, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-6)
    # stored weights are unit-variance: the scale lives in the forward pass, not the init
    assert abs(float(conv.weight.detach().std()) - 1.0) < 0.2


def test_equalized_linear_runtime_weight_and_lr_mul():
    torch.manual_seed(0)
    lin = EqualizedLinear(16, 4)
    assert torch.allclose(lin.runtime_weight(), lin.weight * math.sqrt(2.0 / 16))
    slow = EqualizedLinear(16, 4, gain=1.0, lr_mul=0.01)
    # the effective weight is still ~N(0, 1/fan_in) ...
    assert torch.allclose(slow.runtime_weight(), slow.weight * 0.01 / 4.0)
    # ... but its gradient w.r.t. the stored weight is lr_mul times smaller per unit effective
    x = torch.randn(3, 16)
    slow(x).sum().backward()
    g_eff = x.sum(0)[None].expand(4, -1) / 4.0
    assert torch.allclose(slow.weight.grad, g_eff * 0.01, atol=1e-6)


def test_pixel_norm_unit_mean_square():
    x = torch.randn(3, 8, 5, 5) * 7
    y = PixelNorm()(x)
    assert torch.allclose(y.pow(2).mean(dim=1), torch.ones(3, 5, 5), atol=1e-4)


def test_minibatch_stddev_shape_and_hand_value():
    layer = MinibatchStdDev(group_size=2, eps=0.0)
    # Two samples, one channel, 1x2 pixels: per-pixel population std over the pair is
    # |a-b|/2 -> pixel 0: |1-3|/2 = 1, pixel 1: |0-4|/2 = 2; mean = 1.5
    x = torch.tensor([[[[1.0, 0.0]]], [[[3.0, 4.0]]]])
    y = layer(x)
    assert y.shape == (2, 2, 1, 2)
    assert torch.equal(y[:, :1], x)
    assert torch.allclose(y[:, 1], torch.full((2, 1, 2), 1.5))


def test_minibatch_stddev_groups_are_strided():
    layer = MinibatchStdDev(group_size=2, eps=0.0)
    # N=4, G=2 -> groups {0,2} and {1,3}
    x = torch.tensor([0.0, 10.0, 2.0, 10.0]).reshape(4, 1, 1, 1)
    y = layer(x)[:, 1].flatten()
    assert torch.allclose(y, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    # batch of 3 with group 2: falls back to a group size that divides it (1 -> std 0)
    assert layer(torch.randn(3, 4, 2, 2)).shape == (3, 5, 2, 2)


def test_demodulation_normalises_each_output_filter():
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 4, 3, style_dim=8, demodulate=True)
    style = torch.rand(5, 6) * 3 + 0.1
    w = conv.modulated_weight(style)
    norms = w.pow(2).sum(dim=(2, 3, 4)).sqrt()
    assert torch.allclose(norms, torch.ones(5, 4), atol=1e-4)
    plain = ModulatedConv2d(6, 4, 3, style_dim=8, demodulate=False)
    assert not torch.allclose(plain.modulated_weight(style).pow(2).sum(dim=(2, 3, 4)), torch.ones(5, 4))


def test_modulated_conv_matches_per_sample_conv():
    torch.manual_seed(0)
    conv = ModulatedConv2d(3, 2, 3, style_dim=4, demodulate=True)
    x = torch.randn(2, 3, 5, 5)
    wlat = torch.randn(2, 4)
    out = conv(x, wlat)
    weights = conv.modulated_weight(conv.affine(wlat))
    for b in range(2):
        ref = F.conv2d(x[b : b + 1], weights[b], padding=1)
        assert torch.allclose(out[b : b + 1], ref, atol=1e-5)
    up = ModulatedConv2d(3, 2, 3, style_dim=4, up=True)
    assert up(x, wlat).shape == (2, 2, 10, 10)


def test_r1_penalty_with_known_gradient():
    a = torch.randn(1, 1, 4, 4)

    def d(x):  # linear critic: grad_x D = a * 2 everywhere
        return (2 * a * x).flatten(1).sum(1)

    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    pen = r1_penalty(d(x), x)
    assert torch.allclose(pen, (2 * a).pow(2).sum(), rtol=1e-5)

    def d2(x):  # quadratic critic: grad = 2x, ||grad||^2 = 4 ||x||^2
        return x.pow(2).flatten(1).sum(1)

    x2 = torch.randn(3, 1, 4, 4, requires_grad=True)
    pen2 = r1_penalty(d2(x2), x2)
    assert torch.allclose(pen2, 4 * x2.detach().pow(2).flatten(1).sum(1).mean(), rtol=1e-5)
    pen2.backward()  # penalty is differentiable (create_graph) so it can be optimised
    assert x2.grad is not None


def test_gradient_penalty_with_known_gradient():
    # D(x) = c * sum(x) has ||grad|| = c * sqrt(numel) at every point
    real = torch.randn(4, 1, 4, 4)
    fake = torch.randn(4, 1, 4, 4)
    c = 0.5
    gp = gradient_penalty(lambda x: c * x.flatten(1).sum(1), real, fake)
    assert torch.allclose(gp, torch.tensor((c * 4.0 - 1.0) ** 2))


def _drive(ada: AdaptiveAugment, sign: float, steps: int, batch: int = 8) -> None:
    for _ in range(steps):
        ada.accumulate(torch.full((batch,), sign))
        ada.step(batch)


def test_ada_p_rises_when_d_overfits_and_falls_otherwise():
    cfg = AdaConfig(speed_images=320, interval=4)
    ada = AdaptiveAugment(cfg)
    _drive(ada, +1.0, 8)  # D confidently positive on every real: r_t = 1 > 0.6
    assert ada.p == pytest.approx(2 * 8 * 4 / 320)
    high = ada.p
    _drive(ada, -1.0, 4)  # r_t = -1 < 0.6
    assert ada.p == pytest.approx(high - 8 * 4 / 320)
    _drive(ada, -1.0, 400)
    assert ada.p == 0.0  # clamped
    _drive(ada, +1.0, 400)
    assert ada.p == 1.0


def test_ada_state_round_trip():
    ada = AdaptiveAugment(AdaConfig(speed_images=100, interval=3))
    _drive(ada, 1.0, 5)
    other = AdaptiveAugment(AdaConfig(speed_images=100, interval=3))
    other.load_state_dict(ada.state_dict())
    _drive(ada, 1.0, 2)
    _drive(other, 1.0, 2)
    assert other.state_dict() == ada.state_dict()


def test_augment_identity_at_p0_and_grayscale_safe_ops():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8, requires_grad=True)
    assert augment(x, 0.0, AdaConfig()) is x
    # geometry only (no intensity ops): the multiset of pixel values of each image is kept
    # whenever translation is zero; with translation, values come from the same image.
    cfg = AdaConfig(brightness_std=0.0, contrast_std=0.0, max_translate=0.0)
    y = augment(x, 1.0, cfg)
    assert y.shape == x.shape
    assert torch.allclose(y.detach().flatten(1).sort(1).values, x.detach().flatten(1).sort(1).values)
    assert not torch.allclose(y, x)
    y.sum().backward()  # differentiable for the generator step
    assert torch.allclose(x.grad, torch.ones_like(x))
    # single channel in, single channel out, full pipeline
    z = augment(torch.randn(4, 1, 8, 8), 1.0, AdaConfig())
    assert z.shape == (4, 1, 8, 8)
