"""StyleGAN beyond the conformance suite (tests/test_conformance.py): ADA state through fit/resume."""

from __future__ import annotations

import pytest
import torch

from baselines.stylegan import StyleGAN, create
from genbench.testing import toy_images

TINY = {**StyleGAN.conformance["overrides"], "log_every": 1}


def test_ada_probability_is_checkpointed_and_resumed(tmp_path):
    data = toy_images(16, 16, seed=0)
    # target -1: any r_t counts as over-confident, so p rises by 8/64 at every step
    opts = {**TINY, "ada_target": -1.0}
    m = create("quick", resolution=16, **opts)
    res = m.fit(data, steps=4, seed=0, workdir=tmp_path / "full")
    ps = [h["ada_p"] for h in res.history]
    assert ps == pytest.approx([0.125, 0.25, 0.375, 0.5])
    ckpt = max((tmp_path / "full" / "checkpoints").glob("ckpt-*.pt"))
    state = torch.load(ckpt, weights_only=True)
    assert state["extra"]["ada"]["p"] == pytest.approx(0.5)
    # interrupted at 2 and resumed: p continues from the checkpoint, not from 0
    create("quick", resolution=16, **opts).fit(data, steps=2, seed=0, workdir=tmp_path / "part")
    again = create("quick", resolution=16, **opts).fit(data, steps=4, seed=0, workdir=tmp_path / "part")
    assert again.resumed_from == 2
    assert [h["ada_p"] for h in again.history] == pytest.approx(ps)


def test_noise_and_latent_come_from_the_seed():
    m = create("quick", resolution=16, **TINY)
    for mod in m.g_ema.modules():
        if mod.__class__.__name__ == "NoiseInjection":
            mod.strength.data.fill_(1.0)
    a, b = m.sample(2, seed=4), m.sample(2, seed=4)
    assert torch.equal(a, b)
