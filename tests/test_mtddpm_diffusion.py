"""MT-DDPM diffusion core: closed forms, the hybrid loss, respacing and the three samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from mtddpm.diffusion import (
    GaussianDiffusion,
    SecondMomentTimestepSampler,
    cosine_betas,
    discretized_gaussian_log_likelihood,
    linear_betas,
    normal_kl,
    space_timesteps,
)
from mtddpm.samplers import run_sampler


@pytest.fixture(scope="module")
def proc() -> GaussianDiffusion:
    return GaussianDiffusion.from_schedule("linear", 4000)


def test_schedules_shapes_and_ranges():
    for betas in (linear_betas(4000), cosine_betas(4000), linear_betas(21), cosine_betas(3)):
        assert np.all(betas > 0) and np.all(betas < 1)
    with pytest.raises(ValueError, match="T > 20"):
        linear_betas(7)
    # the linear schedule spans the same total noise for any T
    abar_1000 = np.prod(1 - linear_betas(1000))
    abar_4000 = np.prod(1 - linear_betas(4000))
    assert abs(math.log(abar_1000) - math.log(abar_4000)) / abs(math.log(abar_1000)) < 0.01
    # cosine: abar(t) follows cos^2 closely away from the clipped end
    c = cosine_betas(1000)
    abar = np.cumprod(1 - c)
    f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    assert np.allclose(abar[:900], f(np.arange(1, 901)) / f(0), rtol=1e-9)


def test_q_sample_matches_moments(proc):
    x0 = torch.full((20000, 1), 0.5, dtype=torch.float64)
    t = torch.full((20000,), 1234)
    g = torch.Generator().manual_seed(0)
    xt = proc.q_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    ab = float(proc.alphas_cumprod[1234])
    assert abs(xt.mean().item() - math.sqrt(ab) * 0.5) < 0.03
    assert abs(xt.var().item() - (1 - ab)) < 0.03


def test_posterior_against_bayes_rule(proc):
    # q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0), both Gaussian: multiply precisions.
    t_idx = [1, 10, 999, 3999]
    x0 = torch.tensor([0.3, -0.7, 0.9, 0.0], dtype=torch.float64)
    xt = torch.tensor([0.1, 1.2, -0.4, 2.0], dtype=torch.float64)
    t = torch.tensor(t_idx)
    mean, var, logvar = proc.q_posterior(x0, xt, t)
    for k, ti in enumerate(t_idx):
        b = float(proc.betas[ti])
        abp = float(proc.alphas_cumprod_prev[ti])
        prec = 1 / (1 - abp) + (1 - b) / b
        m = (math.sqrt(abp) * x0[k].item() / (1 - abp) + math.sqrt(1 - b) * xt[k].item() / b) / prec
        assert mean[k].item() == pytest.approx(m, rel=1e-9, abs=1e-12)
        assert var[k].item() == pytest.approx(1 / prec, rel=1e-9)
        assert logvar[k].item() == pytest.approx(math.log(1 / prec), rel=1e-9)
    # t = 0: variance 0, log variance clipped to that of t = 1
    _, var0, logvar0 = proc.q_posterior(x0[:1], xt[:1], torch.tensor([0]))
    assert var0.item() == 0.0
    assert logvar0.item() == pytest.approx(float(proc.posterior_log_variance_clipped[1]))


def test_normal_kl_against_torch_distributions():
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(50, generator=g), torch.randn(50, generator=g)
    l1, l2 = torch.randn(50, generator=g), torch.randn(50, generator=g)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, torch.exp(0.5 * l1)), torch.distributions.Normal(m2, torch.exp(0.5 * l2))
    )
    assert torch.allclose(normal_kl(m1, l1, m2, l2), ref, atol=1e-5)


def test_learned_range_endpoints(proc):
    t = torch.tensor([1, 50, 2000, 3999])
    shape = (4, 1, 2, 2)
    s_hi = torch.exp(proc.model_log_variance(torch.ones(shape, dtype=torch.float64), t))
    s_lo = torch.exp(proc.model_log_variance(-torch.ones(shape, dtype=torch.float64), t))
    assert torch.allclose(s_hi[:, 0, 0, 0], proc.betas[t], rtol=1e-10)
    assert torch.allclose(s_lo[:, 0, 0, 0], proc.posterior_variance[t], rtol=1e-10)
    # v = 0 is the geometric mean, i.e. interpolation in log space
    s_mid = torch.exp(proc.model_log_variance(torch.zeros(shape, dtype=torch.float64), t))
    assert torch.allclose(s_mid[:, 0, 0, 0], torch.sqrt(proc.betas[t] * proc.posterior_variance[t]))


def test_mean_is_eq15_without_clipping(proc):
    g = torch.Generator().manual_seed(2)
    xt, eps = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64), torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([5, 700, 3500])
    out = proc.p_mean_variance(xt, t, eps, torch.zeros_like(xt))
    b = proc.betas[t].view(-1, 1, 1, 1)
    ab = proc.alphas_cumprod[t].view(-1, 1, 1, 1)
    eq15 = (xt - b / torch.sqrt(1 - ab) * eps) / torch.sqrt(1 - b)
    assert torch.allclose(out["mean"], eq15, atol=1e-10)


@pytest.mark.parametrize("x0", [-1.0, -1 + 2 / 255 * 40, 0.0, 0.5, 1.0])
@pytest.mark.parametrize("mean,std", [(0.02, 0.01), (0.0, 0.05), (0.6, 0.3)])
def test_decoder_nll_against_numerical_integration(x0, mean, std):
    w = 1 / 255
    lo = -np.inf if x0 <= -1 + w else x0 - w
    hi = np.inf if x0 >= 1 - w else x0 + w
    p, _ = integrate.quad(lambda u: stats.norm.pdf(u, mean, std), lo, hi, epsabs=1e-14, points=[mean] if np.isfinite(lo) and np.isfinite(hi) and lo < mean < hi else None)
    args = (torch.tensor([x0], dtype=torch.float64), torch.tensor([mean], dtype=torch.float64), torch.tensor([math.log(std)], dtype=torch.float64))
    exact = discretized_gaussian_log_likelihood(*args, bin_half_width=w, cdf="erf").item()
    approx = discretized_gaussian_log_likelihood(*args, bin_half_width=w, cdf="tanh").item()
    if p > 1e-10:
        assert exact == pytest.approx(math.log(p), abs=1e-6)
        # the tanh CDF is off by at most ~2e-4 in probability per edge
        assert abs(math.exp(approx) - p) < 5e-4
    else:
        assert exact < -20 and approx < -7


def test_bin_width_is_configurable():
    x = torch.tensor([0.0], dtype=torch.float64)
    m = torch.tensor([0.0], dtype=torch.float64)
    ls = torch.tensor([math.log(0.1)], dtype=torch.float64)
    narrow = discretized_gaussian_log_likelihood(x, m, ls, bin_half_width=1 / 4095, cdf="erf").item()
    wide = discretized_gaussian_log_likelihood(x, m, ls, bin_half_width=1 / 255, cdf="erf").item()
    assert narrow == pytest.approx(math.log(2 * (stats.norm.cdf(1 / 4095 / 0.1) - 0.5)), abs=1e-9)
    assert narrow < wide


def test_vlb_gradient_reaches_v_but_not_eps(proc):
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 1, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 1, 100, 3000])
    xt = proc.q_sample(x0, t, noise)
    eps = torch.randn(x0.shape, generator=g, requires_grad=True)
    v = torch.zeros(x0.shape, requires_grad=True)
    out = proc.hybrid_loss(x0, t, noise, (eps, v), xt, gamma=0.01)
    g_eps, g_v = torch.autograd.grad(out.vlb.sum(), (eps, v), allow_unused=True)
    assert g_eps is None or torch.count_nonzero(g_eps) == 0
    assert g_v is not None and torch.count_nonzero(g_v) > 0
    # the total loss trains eps through the MSE only
    (g_total,) = torch.autograd.grad(out.loss.sum(), eps)
    assert torch.allclose(g_total, -2 * (noise - eps) / 16, atol=1e-6)


def test_vlb_kl_is_zero_at_true_posterior(proc):
    # exact eps (so exact mean) and v = -1 (posterior variance): the KL term vanishes for t > 0.
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 500, 3999])
    xt = proc.q_sample(x0, t, noise)
    vlb = proc.vlb_terms(x0, xt, t, noise, -torch.ones_like(x0))
    assert torch.allclose(vlb, torch.zeros(3, dtype=torch.float64), atol=1e-8)
    vlb_hi = proc.vlb_terms(x0, xt, t, noise, torch.ones_like(x0))
    assert (vlb_hi > 0).all()


def test_respacing_reproduces_abar(proc):
    for kept in (space_timesteps(4000, 500), [0, 7, 8, 1000, 3999], space_timesteps(4000, 50)):
        r = proc.respace(kept)
        assert r.num_timesteps == len(kept)
        assert torch.equal(r.timestep_map, torch.tensor(kept))
        assert torch.allclose(r.alphas_cumprod, proc.alphas_cumprod[kept], rtol=1e-12)
    k500 = space_timesteps(4000, 500)
    assert len(k500) == 500 and k500[0] == 0 and k500[-1] == 3999
    # respacing a respaced chain composes the maps
    rr = proc.respace(k500).respace(50)
    assert torch.allclose(rr.alphas_cumprod, proc.alphas_cumprod[rr.timestep_map], rtol=1e-12)


def test_second_moment_sampler_prefers_high_loss_steps():
    s = SecondMomentTimestepSampler(8, history=3)
    t, w = s.sample(16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(w, torch.ones(16))  # uniform while warming up
    for _ in range(3):
        s.update(torch.arange(8), torch.tensor([1.0] * 7 + [10.0]))
    p = s.probabilities()
    assert p[7] > 5 * p[0]
    _, w = s.sample(4000, generator=torch.Generator().manual_seed(0))
    # importance weights make the estimator unbiased: E[w] = 1
    assert abs(w.mean().item() - 1.0) < 0.1
    state = s.state_dict()
    s2 = SecondMomentTimestepSampler(8, history=3)
    s2.load_state_dict(state)
    assert torch.equal(s2.probabilities(), p)


# --- samplers on Gaussian data with the exact denoiser ------------------------------------------

M, S = 0.3, 0.2


def _analytic_model(proc: GaussianDiffusion, chain: GaussianDiffusion | None = None):
    """The exact eps-predictor for x0 ~ N(M, S^2) and, for ``chain``, the exact variance as v.

    The true reverse step of Gaussian data has variance betatilde_s + c1_s^2 Var(x0 | x_s)
    (c1 the posterior's x0 coefficient); v places it between betatilde_s (v=-1) and beta_s (v=1)
    in log space, which is exactly what the learned-range parameterisation can express.
    """
    abar = proc.alphas_cumprod  # indexed by training t
    index_of = torch.full((proc.num_timesteps,), -1, dtype=torch.long)
    if chain is not None:
        index_of[chain.timestep_map] = torch.arange(chain.num_timesteps)

    def model_fn(x: torch.Tensor, t: torch.Tensor):
        ab = abar[t].to(torch.float64).view(-1, *([1] * (x.ndim - 1)))
        eps = (x - torch.sqrt(ab) * M) * torch.sqrt(1 - ab) / (ab * S**2 + 1 - ab)
        if chain is None:
            return eps.to(x.dtype), -torch.ones_like(x)
        i = index_of[t]
        var_x0 = (S**2 * (1 - ab) / (ab * S**2 + 1 - ab)).flatten()
        true_var = chain.posterior_variance[i] + chain.posterior_mean_coef1[i] ** 2 * var_x0
        lo, hi = chain.posterior_log_variance_clipped[i], chain.log_betas[i]
        frac = ((torch.log(true_var) - lo) / (hi - lo)).clamp(0, 1)
        v = (2 * frac - 1).view(-1, *([1] * (x.ndim - 1))).expand_as(x)
        return eps.to(x.dtype), v.to(x.dtype)

    return model_fn


@pytest.mark.parametrize(
    "sampler,steps,spacing,tol_std",
    [
        ("ancestral", 500, "uniform", 0.006),  # the paper's chain: 500 of 4000, exact learned v
        ("ddim", 50, "quadratic", 0.015),  # first-order ODE: ~5% short on the std at 50 steps
        ("dpm-solver++", 20, "logsnr", 0.006),
    ],
)
def test_samplers_recover_gaussian(proc, sampler, steps, spacing, tol_std):
    """x0 ~ N(0.3, 0.2^2), N = 10000 (standard error of the mean 0.002): mean within 0.006."""
    chain = proc.respace(steps, spacing=spacing)
    assert abs(chain.num_timesteps - steps) <= 1
    g = torch.Generator().manual_seed(5)
    x = run_sampler(
        sampler, _analytic_model(proc, chain), chain, (10000, 1, 1, 1), generator=g, clip_denoised=False
    ).double()
    assert abs(x.mean().item() - M) < 0.006
    assert abs(x.std().item() - S) < tol_std


def test_ancestral_with_posterior_variance_only_shrinks_the_std(proc):
    """v = -1 everywhere (betatilde) underestimates the reverse variance: samples too narrow.
    This is what the learned variance is for; the exact v above recovers S."""
    g = torch.Generator().manual_seed(5)
    chain = proc.respace(500)
    x = run_sampler("ancestral", _analytic_model(proc), chain, (10000, 1, 1, 1), generator=g, clip_denoised=False)
    assert S - 0.02 < x.std().item() < S - 0.003


def test_dpm_solver_needs_logsnr_spacing_at_20_steps(proc):
    """Documents why dpm-solver++ defaults to logsnr spacing: evenly spaced t overshoots the std."""
    g = torch.Generator().manual_seed(5)
    x = run_sampler(
        "dpm-solver++", _analytic_model(proc), proc.respace(20), (10000, 1, 1, 1), generator=g, clip_denoised=False
    )
    assert x.std().item() > S + 0.03


def test_spacings_keep_ends(proc):
    for spacing in ("uniform", "quadratic", "logsnr"):
        kept = proc.kept_timesteps(20, spacing)
        assert kept[0] == 0 and kept[-1] == 3999 and kept == sorted(kept)
        assert 18 <= len(kept) <= 20
    with pytest.raises(ValueError, match="unknown spacing"):
        proc.kept_timesteps(20, "cubic")


def test_unknown_sampler_is_an_error(proc):
    with pytest.raises(ValueError, match="unknown sampler"):
        run_sampler("euler", _analytic_model(proc), proc.respace(5), (2, 1, 1, 1))
