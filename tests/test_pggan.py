"""PGGAN beyond the conformance suite (tests/test_conformance.py): its growth clock through fit/resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from baselines.pggan import PGGAN, create, growth_state, num_stages
from genbench.errors import UsageError
from genbench.testing import toy_images

TINY = {**PGGAN.conformance["overrides"], "log_every": 1}


def test_growth_clock_is_saved_and_drives_sampling(tmp_path):
    data = toy_images(16, 16, seed=0)
    m = create("quick", resolution=16, **{**TINY, "phase_images": 16})
    assert m.growth() == (0, 1.0)
    m.fit(data, steps=3, seed=0, workdir=tmp_path / "run")  # 24 images: fading in 8x8
    assert int(m.g.images_shown) == 24 and int(m.g_ema.images_shown) == 24
    assert m.growth() == (1, 0.5)
    m.save(tmp_path / "w.safetensors")
    other = create("quick", resolution=16, **{**TINY, "phase_images": 16})
    other.load(tmp_path / "w.safetensors")
    assert other.growth() == (1, 0.5)
    assert torch.equal(other.sample(3, seed=2), m.sample(3, seed=2))
    # resuming continues the clock from the checkpoint
    again = create("quick", resolution=16, **{**TINY, "phase_images": 16})
    res = again.fit(data, steps=5, seed=0, workdir=tmp_path / "run")
    assert res.resumed_from == 3
    assert int(again.g.images_shown) == 40 and again.growth() == (1, 1.0)


def test_presets_and_schedule():
    quick = create("quick")
    assert quick.config.resolution == 32
    stages = num_stages(32)
    c = quick.config
    # the automatic schedule reaches the last stage, fully faded in, before the end
    total_images = c.steps * c.batch_size
    assert growth_state(total_images - 1, c.phase_images, stages) == (stages - 1, 1.0)
    assert growth_state(total_images // 2, c.phase_images, stages)[0] < stages - 1
    for r in (16, 64, 256):
        assert create("quick", resolution=r).sample(1).shape == (1, 1, r, r)
    with pytest.raises(UsageError):
        create("quick", resolution=48)
    with pytest.raises(UsageError):
        create("nonexistent")
    paper = PGGAN.presets["paper"]
    assert paper["resolution"] == 256 and paper["phase_images"] == 800_000
    assert dataclasses.asdict(quick.config)["phase_images"] > 0
