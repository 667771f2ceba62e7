"""DDPM baseline: conformance, the wiring to the shared diffusion toolkit (whose math is tested
in test_diffusion.py), U-Net structure, presets and options."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from baselines._unet import AttnBlock, ResBlock, UNet
from baselines.ddpm import DDPM, DDPMConfig, create
from genbench.diffusion import GaussianDiffusion
from genbench.errors import InputError, UsageError
from genbench.testing import ALL_CHECKS, check_generator, toy_images

TINY = dict(ch=8, ch_mult=(1, 2), groups=4, num_res_blocks=1, attn_resolutions=(8,),
            batch_size=8, log_every=1, sample_steps=5, ema_start=0, ema_decay=0.9, lr=2e-3)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_conformance_ddim():
    report = check_generator(create, resolution=16, overrides={**TINY, "sampler": "ddim"})
    assert set(report) == set(ALL_CHECKS)


def test_conformance_ancestral_sampler():
    check_generator(create, resolution=16, overrides={**TINY, "sampler": "ancestral"},
                    checks=("sample", "determinism"))


def test_ddpm_runs_on_the_shared_toolkit():
    g = create("quick", resolution=16, **TINY)
    assert isinstance(g.diffusion, GaussianDiffusion)
    assert (g.diffusion.variance_type, g.diffusion.loss_type, g.diffusion.num_timesteps) == ("fixed-small", "mse", 1000)
    assert float(g.diffusion.betas[0]) == pytest.approx(1e-4) and float(g.diffusion.betas[-1]) == pytest.approx(0.02)


def test_training_step_is_the_eps_mse_at_the_fed_timestep(monkeypatch):
    """The loss logged by a step is the MSE between the noise and the network's prediction for
    x_t = q_sample(x_0, t) at the same t the network was fed."""
    g = create("quick", resolution=16, **TINY)
    calls = []
    forward = UNet.forward

    def spy(self, x, t):
        out = forward(self, x, t)
        calls.append((x.detach().clone(), t.clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(UNet, "forward", spy)
    x0 = -0.5
    hist = g.fit(torch.full((8, 1, 16, 16), x0), steps=2, seed=0).history
    ab = g.diffusion.alphas_cumprod
    for (xt, t, eps), h in zip(calls, hist):
        a = ab[t.long()].view(-1, 1, 1, 1)
        noise = (xt.double() - a.sqrt() * x0) / (1 - a).sqrt()  # what q_sample added
        assert abs(noise.std().item() - 1) < 0.1 and len(set(t.tolist())) > 4
        assert h["loss"] == pytest.approx(((noise - eps.double()) ** 2).mean().item(), rel=1e-4)


def test_sampler_options_are_the_shared_ones():
    g = create("quick", resolution=16, **TINY)
    for sampler in ("ancestral", "ddim", "dpm-solver++"):
        x = g.sample(2, seed=0, sampler=sampler, steps=4)
        assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all()
    for old, new in (("sampling_steps", "sample_steps"), ("spacing", "sample_spacing"), ("eta", "ddim_eta"),
                     ("timesteps", "num_timesteps")):
        with pytest.raises(UsageError, match=f"ddpm: option '{old}' is now called '{new}'"):
            create("quick", **{old: 5})
    with pytest.raises(UsageError, match="sample_spacing"):
        create("quick", sample_spacing="cubic")


def test_unet_shapes_attention_and_groups():
    net = UNet(32, ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(16,), groups=4)
    x = torch.randn(2, 1, 32, 32)
    assert net(x, torch.tensor([0, 999])).shape == (2, 1, 32, 32)
    attn_down = [b for blocks in net.down for b in blocks if isinstance(b, AttnBlock)]
    assert len(attn_down) == 1  # one res block at 16x16
    assert any(isinstance(b, AttnBlock) for b in net.mid)  # and the lowest resolution (8x8)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 4 for m in norms)
    assert any(isinstance(m, ResBlock) for m in net.modules())
    with pytest.raises(UsageError, match="groups"):
        UNet(32, ch=12, groups=8)
    # Time conditioning matters once weights are non-zero.
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    assert not torch.allclose(net(x, torch.tensor([0, 0])), net(x, torch.tensor([500, 500])))


def test_presets_and_options():
    quick = create("quick")
    assert quick.config.resolution == 32 and quick.config.sampler == "ancestral"
    assert 0.5e6 < quick.num_parameters() < 3e6
    assert create("quick", resolution=64).config.resolution == 64
    with pytest.raises(UsageError, match="preset"):
        create("huge")
    with pytest.raises(UsageError, match="unknown option"):
        create("quick", chanels=3)
    with pytest.raises(UsageError, match="power of two"):
        create("quick", resolution=48)
    with pytest.raises(UsageError, match="sampler"):
        create("quick", sampler="euler")
    roles = {f.name: f.metadata.get("role") for f in dataclasses.fields(DDPMConfig)}
    assert roles["sample_steps"] == roles["ddim_eta"] == "sampling" and roles["ch"] == "architecture"
    assert roles["num_timesteps"] == roles["dropout"] == "training"


def test_fit_rejects_bad_input(tmp_path):
    g = create("quick", resolution=16, **TINY)
    with pytest.raises(InputError, match="16x16"):
        g.fit(toy_images(4, 32), steps=1)
    with pytest.raises(InputError, match="single-channel"):
        g.fit(torch.zeros(4, 3, 16, 16), steps=1)
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        g.fit(torch.full((4, 1, 16, 16), 3.0), steps=1)


def test_load_refuses_other_models_and_shapes(tmp_path):
    g = create("quick", resolution=16, **TINY)
    path = tmp_path / "w.safetensors"
    g.save(path)
    other = create("quick", resolution=16, **{**TINY, "ch": 16})
    with pytest.raises(InputError, match="ch=8"):
        other.load(path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError, match="safetensors"):
        g.load(tmp_path / "junk.safetensors")
    assert isinstance(g, DDPM) and math.isfinite(g.num_parameters())
