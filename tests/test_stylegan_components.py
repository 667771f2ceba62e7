"""Component tests for the StyleGAN networks."""

from __future__ import annotations

import torch

from baselines.stylegan import StyleDiscriminator, StyleGenerator


def _gen() -> StyleGenerator:
    torch.manual_seed(0)
    return StyleGenerator(16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)


def test_shapes_and_noise_layout():
    g = _gen()
    assert g.num_ws == 6
    z = torch.randn(3, 8)
    noise = g.synthesis.make_noise(3, torch.Generator().manual_seed(1))
    assert [n.shape[-1] for n in noise] == [4, 8, 8, 16, 16]
    assert g(z, noise).shape == (3, 1, 16, 16)
    d = StyleDiscriminator(16, channel_base=64, channel_max=8)
    assert d(torch.randn(3, 1, 16, 16)).shape == (3,)


def test_style_mixing_uses_both_latents():
    g = _gen()
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)
    ws = g.mix_styles(z1, z2, cutoff=3)
    w1, w2 = g.mapping(z1), g.mapping(z2)
    for k in range(g.num_ws):
        expect = w1 if k < 3 else w2
        assert torch.allclose(ws[:, k], expect)
    noise = g.synthesis.make_noise(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        mixed = g(z1, noise, z2=z2, cutoff=3)
        only1 = g(z1, noise)
        only2 = g(z2, noise)
        # changing either latent changes the mixed image: both are used
        assert not torch.allclose(mixed, only1, atol=1e-5)
        assert not torch.allclose(mixed, only2, atol=1e-5)
        assert torch.allclose(g(z1, noise, z2=z2, cutoff=g.num_ws), only1, atol=1e-6)
        assert torch.allclose(g(z1, noise, z2=z2, cutoff=0), only2, atol=1e-6)


def test_noise_inputs_matter_once_strength_is_nonzero():
    g = _gen()
    z = torch.randn(2, 8)
    n1 = g.synthesis.make_noise(2, torch.Generator().manual_seed(0))
    n2 = g.synthesis.make_noise(2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(g(z, n1), g(z, n2))  # strengths start at zero
        for m in g.modules():
            if m.__class__.__name__ == "NoiseInjection":
                m.strength.fill_(0.5)
        assert not torch.allclose(g(z, n1), g(z, n2))
