"""DDPM baseline: conformance, forward process and posterior against closed forms, samplers on
a 1-D Gaussian with an analytic eps-predictor, U-Net structure, presets."""

from __future__ import annotations

import math

import pytest
import torch

from baselines._diffusion import GaussianDiffusion, linear_betas, spaced_timesteps
from baselines._unet import AttnBlock, ResBlock, UNet
from baselines.ddpm import DDPM, create
from genbench.errors import InputError, UsageError
from genbench.testing import check_generator, toy_images

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
    assert set(report) == {"protocol", "sample", "determinism", "fit_loss", "resume", "save_load"}


def test_conformance_ancestral_sampler():
    check_generator(create, resolution=16, overrides={**TINY, "sampler": "ancestral"},
                    checks=("sample", "determinism"))


@pytest.fixture(scope="module")
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(linear_betas(1000))


def test_forward_moments_match_the_one_step_chain(diffusion):
    # Iterate q(x_t | x_{t-1}) = N(sqrt(1-beta_t) x_{t-1}, beta_t) from a point x_0.
    x0 = torch.tensor([0.7], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros(1, dtype=torch.float64)
    for t in range(1000):
        b = diffusion.betas[t]
        mean, var = (1 - b).sqrt() * mean, (1 - b) * var + b
        if t in (0, 10, 250, 999):
            m, v = diffusion.q_mean_var(x0, torch.tensor([t]))
            assert torch.allclose(m, mean, rtol=1e-10) and torch.allclose(v, var, rtol=1e-10)
    # Monte-Carlo moments of q_sample agree too.
    t = torch.full((200_000,), 300)
    x0s = torch.full((200_000, 1), 0.7)
    xt = diffusion.q_sample(x0s, t, torch.randn(200_000, 1, generator=torch.Generator().manual_seed(0)))
    m, v = diffusion.q_mean_var(x0s[:1], t[:1])
    assert abs(xt.mean().item() - m.item()) < 5e-3
    assert abs(xt.var().item() - v.item()) < 5e-3
    assert diffusion.alpha_bar[-1] < 1e-4  # x_T is (almost) pure noise


def test_posterior_matches_bayes_rule(diffusion):
    # q(x_{t-1}|x_t,x_0) ∝ N(x_{t-1}; sqrt(abar_{t-1}) x_0, 1-abar_{t-1}) N(x_t; sqrt(a_t) x_{t-1}, beta_t)
    x0 = torch.tensor([[-0.3], [0.9]], dtype=torch.float64)
    xt = torch.tensor([[0.5], [-1.2]], dtype=torch.float64)
    for step in (1, 5, 100, 999):
        t = torch.tensor([step, step])
        ab_prev = diffusion.alpha_bar[step - 1]
        a, b = diffusion.alphas[step], diffusion.betas[step]
        prec = 1 / (1 - ab_prev) + a / b
        mean = (ab_prev.sqrt() * x0 / (1 - ab_prev) + a.sqrt() * xt / b) / prec
        m, v = diffusion.posterior(x0, xt, t)
        assert torch.allclose(m, mean, rtol=1e-9), step
        assert torch.allclose(v, (1 / prec).expand_as(v), rtol=1e-9), step
    # At t = 0 the posterior collapses onto x_0.
    m, v = diffusion.posterior(x0, xt, torch.tensor([0, 0]))
    assert torch.allclose(m, x0) and torch.all(v == 0)


def _gaussian_eps(diffusion: GaussianDiffusion, m: float, s: float):
    """The exact eps-predictor E[eps | x_t] for x_0 ~ N(m, s^2)."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = diffusion.alpha_bar[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return (x - ab.sqrt() * m) * (1 - ab).sqrt() / (ab * s**2 + 1 - ab)

    return eps


@pytest.mark.parametrize(
    "sampler, kwargs, tol",
    [
        ("ancestral", {}, 0.01),  # the paper's sampler: 1000 steps, posterior variance
        ("ancestral", {"variance": "beta"}, 0.03),  # larger variance adds a little spread
        ("ddim", {"steps": 1000}, 0.01),
        ("ddim", {"steps": 50, "spacing": "quadratic"}, 0.015),
        ("ancestral", {"steps": 100, "spacing": "quadratic"}, 0.015),
    ],
)
def test_samplers_recover_a_gaussian(diffusion, sampler, kwargs, tol):
    # Coarse chains are biased low in std (Gaussian steps ignore Var[x_0 | x_t]); with
    # uniform spacing 50 DDIM steps give 0.177 for 0.2, quadratic spacing 0.192.
    m, s = 0.3, 0.2
    fn = diffusion.sample_ancestral if sampler == "ancestral" else diffusion.sample_ddim
    x = fn(_gaussian_eps(diffusion, m, s), (20_000, 1), torch.Generator().manual_seed(1),
           clip_denoised=False, **kwargs)
    assert abs(x.mean().item() - m) < 0.01, x.mean()
    assert abs(x.std().item() - s) < tol, x.std()


def test_ddim_with_eta_one_is_the_respaced_ancestral_sampler(diffusion):
    eps = _gaussian_eps(diffusion, 0.1, 0.4)
    a = diffusion.sample_ddim(eps, (500, 1), torch.Generator().manual_seed(3), steps=40, eta=1.0,
                              clip_denoised=False)
    b = diffusion.sample_ancestral(eps, (500, 1), torch.Generator().manual_seed(3), steps=40,
                                   clip_denoised=False)
    assert torch.allclose(a, b, atol=1e-4)


def test_sampler_fails_with_a_wrong_predictor(diffusion):
    # The recovery test above can fail: a predictor for another target gives other moments.
    x = diffusion.sample_ddim(_gaussian_eps(diffusion, -0.5, 0.05), (5_000, 1),
                              torch.Generator().manual_seed(1), clip_denoised=False)
    assert abs(x.mean().item() - 0.3) > 0.5


def test_spaced_timesteps():
    assert spaced_timesteps(1000, 1000) == list(range(1000))
    ts = spaced_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 0 and ts[-1] == 999
    q = spaced_timesteps(1000, 50, "quadratic")
    assert q[0] == 0 and q[-1] == 999 and q[1] - q[0] < ts[1] - ts[0]
    with pytest.raises(UsageError):
        spaced_timesteps(1000, 0)
    with pytest.raises(UsageError):
        spaced_timesteps(1000, 10, "cosine")


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
