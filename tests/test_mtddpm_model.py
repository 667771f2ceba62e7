"""MT-DDPM network (Swin attention, U-shape) and the Generator it is wrapped in."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets.swin_unetr import compute_mask

from genbench.errors import UsageError
from genbench.testing import check_generator
from mtddpm.model import PRESETS, create
from mtddpm.network import MTDDPMNet, NetworkConfig, count_parameters
from mtddpm.swin import SwinLayer, shifted_window_mask, window_partition, window_reverse

TINY = dict(
    base_channels=8, channel_mult=(1, 2), swin_levels=(False, True), num_heads=(1, 2),
    window_size=(4, 4), conv_sections=2, swin_sections=2, norm_groups=4, batch_size=4,
    log_every=1, checkpoint_every=0, num_timesteps=100, sampling_steps=4, sample_batch_size=4,
    ema_start=0, lr=2e-3,
)


def test_window_partition_roundtrip():
    x = torch.randn(2, 8, 12, 3)
    w = window_partition(x, 4)
    assert w.shape == (2 * 2 * 3, 16, 3)
    assert torch.equal(window_reverse(w, 4, 8, 12), x)
    # first window holds the top-left 4x4 block in row-major order
    assert torch.equal(w[0].view(4, 4, 3), x[0, :4, :4])


def test_mask_matches_monai():
    for h, w, ws in ((8, 8, 4), (16, 8, 4), (16, 16, 8)):
        mine = shifted_window_mask(h, w, ws, ws // 2)
        ref = compute_mask([h, w], (ws, ws), (ws // 2, ws // 2), "cpu")  # 0 allowed, -100 masked
        assert torch.equal(mine, ref == 0)


def _layer(shifted: bool) -> SwinLayer:
    torch.manual_seed(0)
    return SwinLayer(dim=8, num_heads=2, window_size=4, shifted=shifted).eval()


def test_shifted_attention_never_sees_across_the_wrap():
    layer = _layer(shifted=True)
    x = torch.randn(1, 8, 8, 8)  # (B, H, W, C) for the attention part
    base = layer.attention(x)
    # (7, 7) and (0, 0) share the last shifted window only through the cyclic roll
    y = x.clone()
    y[0, 0, 0] += 5.0
    assert torch.allclose(layer.attention(y)[0, 7, 7], base[0, 7, 7], atol=1e-6)
    # positive control: (6, 6) is a genuine neighbour of (7, 7) in that window
    z = x.clone()
    z[0, 6, 6] += 5.0
    assert not torch.allclose(layer.attention(z)[0, 7, 7], base[0, 7, 7], atol=1e-3)
    # and without the shift, (7, 7) sees (4, 4) but not (3, 3)
    plain = _layer(shifted=False)
    b2 = plain.attention(x)
    u = x.clone()
    u[0, 3, 3] += 5.0
    assert torch.allclose(plain.attention(u)[0, 7, 7], b2[0, 7, 7], atol=1e-6)


def test_shift_is_undone_exactly():
    # A huge bias on the relative offset (0, 0) makes every token attend to itself only; the
    # output at each position must then be that token's own projection, wherever the roll put it.
    for shifted in (False, True):
        layer = _layer(shifted)
        ws = layer.attn.window_size
        with torch.no_grad():
            layer.attn.relative_position_bias_table.zero_()
            layer.attn.relative_position_bias_table[(ws - 1) * (2 * ws - 1) + (ws - 1)] = 1e4
        x = torch.randn(2, 8, 8, 8)
        _, _, v = layer.attn.qkv(x).chunk(3, dim=-1)
        expected = layer.attn.proj(v)
        assert torch.allclose(layer.attention(x), expected, atol=1e-5)


def test_network_shapes_and_variance_range():
    cfg = NetworkConfig(image_size=16, base_channels=8, channel_mult=(1, 2), swin_levels=(False, True),
                        num_heads=(1, 2), window_size=(4, 4), conv_sections=2, norm_groups=4)
    net = MTDDPMNet(cfg)
    with torch.no_grad():
        net.head[-1].weight.normal_(0, 10.0)  # large outputs: v must still lie in [-1, 1]
    eps, v = net(torch.randn(3, 1, 16, 16), torch.tensor([0, 50, 3999]))
    assert eps.shape == v.shape == (3, 1, 16, 16)
    assert v.abs().max() <= 1.0 and v.abs().max() > 0.9
    with pytest.raises(ValueError, match="divisible"):
        MTDDPMNet(NetworkConfig(image_size=24, channel_mult=(1, 2, 2, 4)))


def test_presets_and_parameter_counts():
    quick = create("quick")
    assert quick.config.resolution == 32 and quick.config.sampling_steps == 50
    assert 1e5 < quick.num_parameters() < 3e6
    paper_cfg = create.__globals__["MTDDPMConfig"](**PRESETS["paper"])
    n = count_parameters(MTDDPMNet(paper_cfg.network_config()))
    assert 90e6 < n < 130e6  # the authors' configuration has 116.0 M
    assert paper_cfg.num_timesteps == 4000 and paper_cfg.sampling_steps == 500


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError, match="unknown option"):
        create("quick", nonsense=1)
    with pytest.raises(UsageError, match="sampler"):
        create("quick", sampler="euler")
    with pytest.raises(UsageError, match="preset"):
        create("huge")
    with pytest.raises(UsageError, match="resolution"):
        create("quick", resolution=48)


def test_conformance():
    report = check_generator(create, resolution=16, overrides=TINY, loss_key="mse", loss_steps=40)
    assert report


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++"])
def test_fast_samplers_through_the_generator(sampler):
    g = create("quick", resolution=16, **TINY)
    a = g.sample(3, seed=1, sampler=sampler, steps=5)
    b = g.sample(3, seed=1, sampler=sampler, steps=5)
    assert a.shape == (3, 1, 16, 16) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
