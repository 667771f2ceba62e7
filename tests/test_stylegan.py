"""StyleGAN against the Generator conformance suite, plus ADA state through fit/resume."""

from __future__ import annotations

import pytest
import torch

from baselines.stylegan import create
from genbench.testing import check_generator, toy_images

TINY = {
    "z_dim": 16, "w_dim": 16, "mapping_layers": 2, "channel_base": 128, "channel_max": 16, "batch_size": 8,
    "log_every": 1, "checkpoint_every": 0, "r1_interval": 2, "ada_speed_images": 64, "ada_interval": 1,
}


def test_conformance_suite(tmp_path):
    report = check_generator(
        create, resolution=16, overrides=TINY, loss_key="loss_d", fit_steps=6, interrupt_at=3,
        loss_steps=30, tmp_dir=tmp_path,
    )
    assert set(report) == {"protocol", "sample", "determinism", "fit_loss", "resume", "save_load"}


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
