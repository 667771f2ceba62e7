"""Component tests for the PGGAN networks and growth schedule."""

from __future__ import annotations

import pytest
import torch

from baselines._gan_layers import downsample2x, upsample2x
from baselines.pggan import PGDiscriminator, PGGenerator, growth_state, resize_to_stage


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return PGGenerator(16, 8, fmap_base=32, fmap_max=16), PGDiscriminator(16, fmap_base=32, fmap_max=16)


def test_generator_fade_in_endpoints(nets):
    g, _ = nets
    z = torch.randn(4, 8)
    with torch.no_grad():
        for stage in (1, 2):
            old = upsample2x(g(z, stage - 1, 1.0))
            assert torch.allclose(g(z, stage, 0.0), old, atol=1e-6)
            new = g(z, stage, 1.0)
            assert new.shape == (4, 1, 4 * 2**stage, 4 * 2**stage)
            assert not torch.allclose(new, old, atol=1e-3)
            mid = g(z, stage, 0.25)
            assert torch.allclose(mid, 0.75 * old + 0.25 * new, atol=1e-5)


def test_discriminator_fade_in_endpoints(nets):
    _, d = nets
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(d(x, 2, 0.0), d(downsample2x(x), 1, 1.0), atol=1e-5)
        full = d(x, 2, 1.0)
        assert full.shape == (4,)
        assert not torch.allclose(full, d(downsample2x(x), 1, 1.0), atol=1e-4)


def test_growth_schedule_in_images():
    p = 100
    assert growth_state(0, p, 3) == (0, 1.0)
    assert growth_state(99, p, 3) == (0, 1.0)
    assert growth_state(100, p, 3) == (1, 0.0)
    assert growth_state(150, p, 3) == (1, 0.5)
    assert growth_state(250, p, 3) == (1, 1.0)
    assert growth_state(300, p, 3) == (2, 0.0)
    assert growth_state(10_000, p, 3) == (2, 1.0)
    assert growth_state(5, p, 1) == (0, 1.0)


def test_reals_follow_the_stage():
    x = torch.randn(2, 1, 16, 16)
    assert resize_to_stage(x, 2, 1.0) is x
    r = resize_to_stage(x, 1, 0.0)
    assert torch.allclose(r, upsample2x(downsample2x(downsample2x(x))), atol=1e-6)
    assert resize_to_stage(x, 0, 1.0).shape == (2, 1, 4, 4)
