"""The entry-point registry (the conformance checks and their faults: test_conformance.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from baselines.ddpm import create
from genbench.errors import UsageError
from genbench.protocol import (
    DEFAULT_PRESETS,
    Generator,
    available_generators,
    create_generator,
    factory_presets,
    get_factory,
)
from genbench.testing import toy_images

TINY = dict(ch=8, ch_mult=(1, 2), groups=4, num_res_blocks=1, attn_resolutions=(8,),
            batch_size=8, log_every=1, sample_steps=3, ema_start=0, ema_decay=0.5, lr=2e-3)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_registry_lists_baselines_and_builds_them():
    names = available_generators()
    assert {"ddpm", "wgan-gp"} <= set(names) and names == sorted(names)
    g = create_generator("ddpm", "quick", 16, **TINY)
    assert isinstance(g, Generator) and g.config.resolution == 16
    assert get_factory("ddpm") == create
    with pytest.raises(UsageError, match="unknown generator 'nope'.*ddpm"):
        get_factory("nope")


def test_factory_presets():
    assert factory_presets(create) == ("quick", "paper")
    assert factory_presets(lambda **kw: None) == DEFAULT_PRESETS


def test_toy_images_are_canonical():
    x = toy_images(6, 16)
    assert x.shape == (6, 1, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.3


def test_config_is_a_dataclass_with_resolved_values():
    g = create("quick", resolution=16, **TINY)
    d = dataclasses.asdict(g.config)
    assert d["resolution"] == 16 and d["ch"] == 8 and d["sampler"] == "ancestral"
