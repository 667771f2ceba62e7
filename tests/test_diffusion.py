"""The shared diffusion toolkit (genbench.diffusion): closed forms, the losses of every variance
and loss type, respacing, what the network is fed, and the three samplers on Gaussian data with
the exact denoiser. DDPM and MT-DDPM both run on this code; their own tests cover the wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from genbench.diffusion import (
    GaussianDiffusion,
    SecondMomentTimestepSampler,
    cosine_betas,
    discretized_gaussian_log_likelihood,
    kept_timesteps,
    linear_betas,
    normal_kl,
    reject_renamed,
    respace,
    run_sampler,
    space_timesteps,
)
from genbench.errors import UsageError


def learned(T: int = 4000, **kw) -> GaussianDiffusion:
    return GaussianDiffusion.from_schedule(
        "linear", T, variance_type="learned-range", loss_type="hybrid", **kw
    )


@pytest.fixture(scope="module")
def proc() -> GaussianDiffusion:
    return learned(4000)


@pytest.fixture(scope="module")
def ddpm_proc() -> GaussianDiffusion:
    return GaussianDiffusion.from_schedule("linear", 1000)


# --- schedules and the forward process -----------------------------------------------------------


def test_schedules_shapes_and_ranges():
    for betas in (linear_betas(4000), cosine_betas(4000), linear_betas(21), cosine_betas(3)):
        assert np.all(betas > 0) and np.all(betas < 1)
    with pytest.raises(ValueError, match="T > 20"):
        linear_betas(7)
    # at T = 1000 the linear schedule is Ho et al.'s 1e-4 .. 0.02
    assert linear_betas(1000)[0] == pytest.approx(1e-4) and linear_betas(1000)[-1] == pytest.approx(0.02)
    # and it spans the same total noise for any T
    abar_1000 = np.prod(1 - linear_betas(1000))
    abar_4000 = np.prod(1 - linear_betas(4000))
    assert abs(math.log(abar_1000) - math.log(abar_4000)) / abs(math.log(abar_1000)) < 0.01
    c = cosine_betas(1000)
    abar = np.cumprod(1 - c)
    f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    assert np.allclose(abar[:900], f(np.arange(1, 901)) / f(0), rtol=1e-9)


def test_forward_moments_match_the_one_step_chain(ddpm_proc):
    # Iterate q(x_t | x_{t-1}) = N(sqrt(1-beta_t) x_{t-1}, beta_t) from a point x_0.
    x0 = torch.tensor([0.7], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros(1, dtype=torch.float64)
    for t in range(1000):
        b = ddpm_proc.betas[t]
        mean, var = (1 - b).sqrt() * mean, (1 - b) * var + b
        if t in (0, 10, 250, 999):
            m, v, _ = ddpm_proc.q_mean_variance(x0, torch.tensor([t]))
            assert torch.allclose(m, mean, rtol=1e-10) and torch.allclose(v, var, rtol=1e-10)
    g = torch.Generator().manual_seed(0)
    x0s = torch.full((200_000, 1), 0.7, dtype=torch.float64)
    t = torch.full((200_000,), 300)
    xt = ddpm_proc.q_sample(x0s, t, torch.randn(x0s.shape, generator=g, dtype=torch.float64))
    m, v, _ = ddpm_proc.q_mean_variance(x0s[:1], t[:1])
    assert abs(xt.mean().item() - m.item()) < 5e-3
    assert abs(xt.var().item() - v.item()) < 5e-3
    assert ddpm_proc.alphas_cumprod[-1] < 1e-4


def test_posterior_against_bayes_rule(proc):
    # q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0), both Gaussian: multiply precisions.
    t_idx = [1, 10, 999, 3999]
    x0 = torch.tensor([0.3, -0.7, 0.9, 0.0], dtype=torch.float64)
    xt = torch.tensor([0.1, 1.2, -0.4, 2.0], dtype=torch.float64)
    mean, var, logvar = proc.q_posterior(x0, xt, torch.tensor(t_idx))
    for k, ti in enumerate(t_idx):
        b = float(proc.betas[ti])
        abp = float(proc.alphas_cumprod_prev[ti])
        prec = 1 / (1 - abp) + (1 - b) / b
        m = (math.sqrt(abp) * x0[k].item() / (1 - abp) + math.sqrt(1 - b) * xt[k].item() / b) / prec
        assert mean[k].item() == pytest.approx(m, rel=1e-9, abs=1e-12)
        assert var[k].item() == pytest.approx(1 / prec, rel=1e-9)
        assert logvar[k].item() == pytest.approx(math.log(1 / prec), rel=1e-9)
    # t = 0: the posterior collapses onto x_0; its log variance is clipped to that of t = 1
    m0, var0, logvar0 = proc.q_posterior(x0[:1], xt[:1], torch.tensor([0]))
    assert var0.item() == 0.0 and m0.item() == pytest.approx(x0[0].item())
    assert logvar0.item() == pytest.approx(float(proc.posterior_log_variance_clipped[1]))


def test_normal_kl_against_torch_distributions():
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(50, generator=g), torch.randn(50, generator=g)
    l1, l2 = torch.randn(50, generator=g), torch.randn(50, generator=g)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, torch.exp(0.5 * l1)), torch.distributions.Normal(m2, torch.exp(0.5 * l2))
    )
    assert torch.allclose(normal_kl(m1, l1, m2, l2), ref, atol=1e-5)


# --- the reverse step for each variance type ----------------------------------------------------


def test_variance_types(proc):
    t = torch.tensor([1, 50, 2000, 3999])
    like = torch.zeros(4, 1, 2, 2, dtype=torch.float64)

    def var(process, v=None):
        return torch.exp(process.model_log_variance(v, t, like))[:, 0, 0, 0]

    s_hi = var(proc, torch.ones_like(like))
    s_lo = var(proc, -torch.ones_like(like))
    assert torch.allclose(s_hi, proc.betas[t], rtol=1e-10)
    assert torch.allclose(s_lo, proc.posterior_variance[t], rtol=1e-10)
    # v = 0 is the geometric mean: the interpolation is in log space (eq. 16)
    assert torch.allclose(var(proc, torch.zeros_like(like)), torch.sqrt(proc.betas[t] * proc.posterior_variance[t]))
    small = GaussianDiffusion.from_schedule("linear", 4000, variance_type="fixed-small")
    large = GaussianDiffusion.from_schedule("linear", 4000, variance_type="fixed-large")
    assert torch.allclose(var(small), proc.posterior_variance[t], rtol=1e-10)
    assert torch.allclose(var(large), proc.betas[t], rtol=1e-10)


def test_mean_is_eq15_without_clipping(proc):
    g = torch.Generator().manual_seed(2)
    xt = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([5, 700, 3500])
    out = proc.p_mean_variance(torch.cat([eps, torch.zeros_like(eps)], 1), xt, t)
    b = proc.betas[t].view(-1, 1, 1, 1)
    ab = proc.alphas_cumprod[t].view(-1, 1, 1, 1)
    eq15 = (xt - b / torch.sqrt(1 - ab) * eps) / torch.sqrt(1 - b)
    assert torch.allclose(out["mean"], eq15, atol=1e-10)


def test_output_channels_are_checked(proc, ddpm_proc):
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="2 x 1"):
        proc.p_mean_variance(torch.zeros(2, 1, 4, 4), x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="1 output"):
        ddpm_proc.p_mean_variance(torch.zeros(2, 2, 4, 4), x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="learned-range"):
        GaussianDiffusion.from_schedule("linear", 100, loss_type="hybrid")


# --- the losses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("x0", [-1.0, -1 + 2 / 255 * 40, 0.0, 0.5, 1.0])
@pytest.mark.parametrize("mean,std", [(0.02, 0.01), (0.0, 0.05), (0.6, 0.3)])
def test_decoder_nll_against_numerical_integration(x0, mean, std):
    w = 1 / 255
    lo = -np.inf if x0 <= -1 + w else x0 - w
    hi = np.inf if x0 >= 1 - w else x0 + w
    pts = [mean] if np.isfinite(lo) and np.isfinite(hi) and lo < mean < hi else None
    p, _ = integrate.quad(lambda u: stats.norm.pdf(u, mean, std), lo, hi, epsabs=1e-14, points=pts)
    args = (torch.tensor([x0], dtype=torch.float64), torch.tensor([mean], dtype=torch.float64),
            torch.tensor([math.log(std)], dtype=torch.float64))
    exact = discretized_gaussian_log_likelihood(*args, bin_half_width=w, cdf="erf").item()
    approx = discretized_gaussian_log_likelihood(*args, bin_half_width=w, cdf="tanh").item()
    if p > 1e-10:
        assert exact == pytest.approx(math.log(p), abs=1e-6)
        assert abs(math.exp(approx) - p) < 5e-4  # the tanh CDF is off by at most ~2e-4 per edge
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


def test_vlb_at_t0_is_the_decoder_nll(proc):
    """L_vlb(0) = -log p(x_0 | x_1) under the discretised Gaussian, computed here by
    integrating N(mean, Sigma) over each pixel's bin with SciPy (not the KL of t > 0)."""
    chain = learned(4000, cdf="erf")
    x0 = torch.tensor([-1.0, -0.5, 0.2, 1.0], dtype=torch.float64).view(1, 1, 2, 2)
    eps = torch.tensor([0.3, -1.2, 0.5, 2.0], dtype=torch.float64).view(1, 1, 2, 2)
    v = torch.tensor([0.5, -0.5, 0.0, 0.9], dtype=torch.float64).view(1, 1, 2, 2)
    t = torch.tensor([0])
    xt = chain.q_sample(x0, t, eps)
    out = torch.cat([eps + 0.01, v], 1)  # a slightly wrong eps, so the mean is off x_0
    got = chain.vlb_terms(x0, xt, t, out).item()
    p = chain.p_mean_variance(out, xt, t)
    w = 1 / 255
    nll = 0.0
    for x, m, lv in zip(x0.flatten().tolist(), p["mean"].flatten().tolist(), p["log_variance"].flatten().tolist()):
        lo = -np.inf if x <= -1 + w else x - w
        hi = np.inf if x >= 1 - w else x + w
        sd = math.exp(0.5 * lv)
        nll -= math.log(stats.norm.cdf(hi, m, sd) - stats.norm.cdf(lo, m, sd))
    assert got == pytest.approx(nll / 4 / math.log(2), rel=1e-6)


def test_vlb_for_t_positive_is_the_kl_from_the_true_posterior(proc):
    """L_vlb(t > 0) = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) / ln 2, mean over pixels, with q
    from Bayes' rule, p's mean from eq. 15 and its variance from eq. 16, all written out here."""
    g = torch.Generator().manual_seed(7)
    x0 = torch.rand(3, 1, 2, 2, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps = noise + 0.3 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    v = torch.rand(x0.shape, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.tensor([3, 800, 3500])
    xt = proc.q_sample(x0, t, noise)
    got = proc.vlb_terms(x0, xt, t, torch.cat([eps, v], 1))
    for k, ti in enumerate(t.tolist()):
        b, ab = float(proc.betas[ti]), float(proc.alphas_cumprod[ti])
        abp = float(proc.alphas_cumprod_prev[ti])
        prec = 1 / (1 - abp) + (1 - b) / b
        q_mean = (math.sqrt(abp) * x0[k] / (1 - abp) + math.sqrt(1 - b) * xt[k] / b) / prec
        p_mean = (xt[k] - b / math.sqrt(1 - ab) * eps[k]) / math.sqrt(1 - b)
        f = (v[k] + 1) / 2
        p_var = torch.exp(f * math.log(b) + (1 - f) * math.log(1 / prec))
        kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(q_mean, math.sqrt(1 / prec)), torch.distributions.Normal(p_mean, p_var.sqrt())
        )
        assert got[k].item() == pytest.approx(kl.mean().item() / math.log(2), rel=1e-6)


def test_vlb_kl_is_zero_at_true_posterior(proc):
    # exact eps (so exact mean) and v = -1 (posterior variance): the KL term vanishes for t > 0.
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 500, 3999])
    xt = proc.q_sample(x0, t, noise)
    vlb = proc.vlb_terms(x0, xt, t, torch.cat([noise, -torch.ones_like(x0)], 1))
    assert torch.allclose(vlb, torch.zeros(3, dtype=torch.float64), atol=1e-8)
    vlb_hi = proc.vlb_terms(x0, xt, t, torch.cat([noise, torch.ones_like(x0)], 1))
    assert (vlb_hi > 0).all()


def _hybrid_case(process, t):
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(len(t), 1, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    xt = process.q_sample(x0, t, noise)
    eps = torch.randn(x0.shape, generator=g, requires_grad=True)
    v = (0.5 * torch.randn(x0.shape, generator=g)).requires_grad_(True)
    return x0, noise, xt, eps, v


@pytest.mark.parametrize("weight,chain_steps,expected", [(0.01, None, 0.01), ("rescaled", 50, 0.05),
                                                         ("rescaled", None, 4.0), (0.3, 50, 0.3)])
def test_hybrid_loss_weights_the_vlb(weight, chain_steps, expected):
    """loss = MSE + w * L_vlb, w = gamma or (steps of the chain trained on) / 1000."""
    process = learned(4000, vlb_weight=weight)
    if chain_steps:
        process = respace(process, chain_steps)
    assert process.vlb_weight == pytest.approx(expected)
    t = torch.tensor([0, 1, process.num_timesteps // 2, process.num_timesteps - 1])
    x0, noise, xt, eps, v = _hybrid_case(process, t)
    out = process.losses_from_output(torch.cat([eps, v], 1), x0, xt, t, noise)
    mse = ((noise - eps) ** 2).mean(dim=(1, 2, 3))
    vlb = process.vlb_terms(x0, xt, t, torch.cat([eps, v], 1))
    assert torch.allclose(out.mse, mse) and torch.allclose(out.vlb, vlb)
    assert torch.allclose(out.loss, mse + expected * vlb, rtol=1e-6)
    assert (vlb > 0).all()


def test_vlb_gradient_reaches_v_but_not_eps(proc):
    t = torch.tensor([0, 1, 100, 3000])
    x0, noise, xt, eps, v = _hybrid_case(proc, t)
    out = proc.losses_from_output(torch.cat([eps, v], 1), x0, xt, t, noise)
    g_eps, g_v = torch.autograd.grad(out.vlb.sum(), (eps, v), allow_unused=True, retain_graph=True)
    assert g_eps is None or torch.count_nonzero(g_eps) == 0
    assert g_v is not None and torch.count_nonzero(g_v) > 0
    (g_total,) = torch.autograd.grad(out.loss.sum(), eps)
    assert torch.allclose(g_total, -2 * (noise - eps) / 16, atol=1e-6)  # the MSE alone trains eps


def test_mse_loss_of_a_fixed_variance(ddpm_proc):
    t = torch.tensor([0, 10, 999])
    x0, noise, xt, eps, _ = _hybrid_case(ddpm_proc, t)
    out = ddpm_proc.losses_from_output(eps, x0, xt, t, noise)
    assert out.vlb is None
    assert torch.allclose(out.loss, ((noise - eps) ** 2).mean(dim=(1, 2, 3)))


# --- what the network is fed --------------------------------------------------------------------


def test_training_losses_feed_the_network_its_training_timesteps():
    """The network sees x_t = q_sample(x_0, t, noise) together with the original step index
    of t (x 1000/T when rescaled), never a constant or the respaced index."""
    base = learned(1000, rescale_timesteps=True)
    for process, scale in ((base, 1.0), (learned(4000), 1.0), (learned(4000, rescale_timesteps=True), 0.25)):
        chain = respace(process, 50)
        for p in (process, chain):
            seen = {}

            def model_fn(x, ts, _seen=seen):
                _seen["x"], _seen["t"] = x.clone(), ts.clone()
                return torch.zeros(x.shape[0], 2, *x.shape[2:])

            g = torch.Generator().manual_seed(0)
            x0 = torch.rand(6, 1, 4, 4, generator=g) * 2 - 1
            noise = torch.randn(x0.shape, generator=g)
            t = torch.tensor([0, 1, 7, 20, p.num_timesteps - 2, p.num_timesteps - 1])
            p.training_losses(model_fn, x0, t, noise)
            assert seen["t"].dtype == torch.float32
            assert torch.allclose(seen["t"], p.timestep_map[t].float() * scale)
            assert torch.allclose(seen["x"], p.q_sample(x0, t, noise))
    chain = respace(base, 50)
    assert chain.model_timesteps(torch.tensor([0, 1, 2, 49])).tolist() == [0.0, 20.0, 41.0, 999.0]


def test_samplers_feed_the_network_the_chain_timesteps():
    chain = respace(learned(4000, rescale_timesteps=True), 10)
    for name in ("ancestral", "ddim", "dpm-solver++"):
        seen = []

        def model_fn(x, ts, _seen=seen):
            _seen.append(ts[0].item())
            return torch.zeros(x.shape[0], 2, *x.shape[2:])

        run_sampler(name, chain, model_fn, (2, 1, 2, 2), generator=torch.Generator().manual_seed(0))
        assert seen == [k * 0.25 for k in reversed(chain.timestep_map.tolist())]


# --- respacing ----------------------------------------------------------------------------------


def test_respacing_reproduces_abar_and_keeps_the_types(proc):
    for kept in (space_timesteps(4000, 500), [0, 7, 8, 1000, 3999], space_timesteps(4000, 50)):
        r = respace(proc, kept)
        assert r.num_timesteps == len(kept)
        assert torch.equal(r.timestep_map, torch.tensor(kept))
        assert torch.allclose(r.alphas_cumprod, proc.alphas_cumprod[kept], rtol=1e-12)
        assert (r.variance_type, r.loss_type, r.original_num_steps) == ("learned-range", "hybrid", 4000)
    k500 = space_timesteps(4000, 500)
    assert len(k500) == 500 and k500[0] == 0 and k500[-1] == 3999
    rr = respace(respace(proc, k500), 50)  # respacing a respaced chain composes the maps
    assert torch.allclose(rr.alphas_cumprod, proc.alphas_cumprod[rr.timestep_map], rtol=1e-12)
    # the respaced betas are 1 - abar_s / abar_{s_prev}, not the parent's betas at the kept steps
    r = respace(proc, [0, 100, 200])
    assert float(r.betas[1]) == pytest.approx(1 - float(proc.alphas_cumprod[100] / proc.alphas_cumprod[0]))
    assert respace(proc, 4000) is proc


def test_authors_chain_is_their_50_steps():
    # improved-diffusion's space_timesteps(1000, [50]): stride 999/49 rounded
    kept = space_timesteps(1000, 50)
    assert kept[:5] == [0, 20, 41, 61, 82] and kept[-3:] == [958, 979, 999] and len(kept) == 50
    chain = respace(learned(1000), 50)
    assert float(chain.betas[0]) == pytest.approx(1e-4)
    assert 0.3 < float(chain.betas[-1]) < 0.36  # the reference's "last ~ 0.33"


def test_spacings_keep_ends(proc):
    for spacing in ("uniform", "quadratic", "logsnr"):
        kept = kept_timesteps(proc, 20, spacing)
        assert kept[0] == 0 and kept[-1] == 3999 and kept == sorted(kept)
        assert 18 <= len(kept) <= 20
    q = kept_timesteps(proc, 20, "quadratic")
    u = kept_timesteps(proc, 20, "uniform")
    assert q[1] - q[0] < u[1] - u[0]  # denser near t = 0
    with pytest.raises(ValueError, match="unknown spacing"):
        kept_timesteps(proc, 20, "cubic")


# --- timestep sampler ---------------------------------------------------------------------------


def test_second_moment_sampler_prefers_high_loss_steps():
    s = SecondMomentTimestepSampler(8, history=3)
    _, w = s.sample(16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(w, torch.ones(16))  # uniform while warming up
    for _ in range(3):
        s.update(torch.arange(8), torch.tensor([1.0] * 7 + [10.0]))
    p = s.probabilities()
    assert p[7] > 5 * p[0]
    _, w = s.sample(4000, generator=torch.Generator().manual_seed(0))
    assert abs(w.mean().item() - 1.0) < 0.1  # importance weights keep the estimator unbiased
    s2 = SecondMomentTimestepSampler(8, history=3)
    s2.load_state_dict(s.state_dict())
    assert torch.equal(s2.probabilities(), p)


# --- samplers on Gaussian data with the exact denoiser ------------------------------------------

M, S = 0.3, 0.2


def _analytic_model(process: GaussianDiffusion, chain: GaussianDiffusion, learned_v: bool = True):
    """The exact eps-predictor for x0 ~ N(M, S^2), and for learned-range the exact v.

    The true reverse step of Gaussian data has variance betatilde_s + c1_s^2 Var(x0 | x_s)
    (c1 the posterior's x0 coefficient); v places it between betatilde_s (v=-1) and beta_s (v=1)
    in log space, which is exactly what the learned-range parameterisation can express.
    The network is fed original (un-rescaled) step indices.
    """
    abar = process.alphas_cumprod
    index_of = torch.full((process.num_timesteps,), -1, dtype=torch.long)
    index_of[chain.timestep_map] = torch.arange(chain.num_timesteps)

    def model_fn(x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        t = ts.long()
        ab = abar[t].to(torch.float64).view(-1, *([1] * (x.ndim - 1)))
        eps = ((x - torch.sqrt(ab) * M) * torch.sqrt(1 - ab) / (ab * S**2 + 1 - ab)).to(x.dtype)
        if chain.variance_type != "learned-range":
            return eps
        if not learned_v:
            return torch.cat([eps, -torch.ones_like(x)], 1)
        i = index_of[t]
        var_x0 = (S**2 * (1 - ab) / (ab * S**2 + 1 - ab)).flatten()
        true_var = chain.posterior_variance[i] + chain.posterior_mean_coef1[i] ** 2 * var_x0
        lo, hi = chain.posterior_log_variance_clipped[i], chain.log_betas[i]
        frac = ((torch.log(true_var) - lo) / (hi - lo)).clamp(0, 1)
        v = (2 * frac - 1).view(-1, *([1] * (x.ndim - 1))).expand_as(x)
        return torch.cat([eps, v.to(x.dtype)], 1)

    return model_fn


def _draw(sampler, process, chain, n=10000, seed=5, **kw):
    g = torch.Generator().manual_seed(seed)
    return run_sampler(sampler, chain, _analytic_model(process, chain, **kw.pop("model", {})),
                       (n, 1, 1, 1), generator=g, clip_denoised=False, **kw).double()


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
    chain = respace(proc, steps, spacing=spacing)
    assert abs(chain.num_timesteps - steps) <= 1
    x = _draw(sampler, proc, chain)
    assert abs(x.mean().item() - M) < 0.006
    assert abs(x.std().item() - S) < tol_std


def test_ancestral_with_posterior_variance_only_shrinks_the_std(proc):
    """v = -1 everywhere (betatilde) underestimates the reverse variance on a 500-step chain:
    samples too narrow. This is what the learned variance is for."""
    x = _draw("ancestral", proc, respace(proc, 500), model={"learned_v": False})
    assert S - 0.02 < x.std().item() < S - 0.003


def test_fixed_small_ancestral_on_the_full_chain(ddpm_proc):
    """Ho et al.'s sampler: 1000 steps with betatilde recover the Gaussian."""
    x = _draw("ancestral", ddpm_proc, ddpm_proc, n=20000, seed=1)
    assert abs(x.mean().item() - M) < 0.01 and abs(x.std().item() - S) < 0.01


def test_ddim_with_eta_one_is_the_fixed_small_ancestral_sampler(ddpm_proc):
    chain = respace(ddpm_proc, 40)
    a = _draw("ddim", ddpm_proc, chain, n=500, seed=3, eta=1.0)
    b = _draw("ancestral", ddpm_proc, chain, n=500, seed=3)
    assert torch.allclose(a, b, atol=1e-4)


def test_dpm_solver_needs_logsnr_spacing_at_20_steps(proc):
    """Why dpm-solver++ defaults to log-SNR spacing: evenly spaced t overshoots the std."""
    x = _draw("dpm-solver++", proc, respace(proc, 20))
    assert x.std().item() > S + 0.03


def test_sampler_fails_with_a_wrong_predictor(ddpm_proc):
    # The recovery tests can fail: a predictor for another target gives other moments.
    chain = respace(ddpm_proc, 50)
    abar = ddpm_proc.alphas_cumprod

    def wrong(x, ts):
        ab = abar[ts.long()].view(-1, 1, 1, 1).float()
        return (x + 0.5 * ab.sqrt()) * (1 - ab).sqrt() / (ab * 0.05**2 + 1 - ab)

    x = run_sampler("ddim", chain, wrong, (5000, 1, 1, 1), generator=torch.Generator().manual_seed(1),
                    clip_denoised=False)
    assert abs(x.mean().item() - M) > 0.5


def test_unknown_sampler_and_renamed_options(proc):
    with pytest.raises(ValueError, match="unknown sampler"):
        run_sampler("euler", proc, lambda x, t: x, (2, 1, 1, 1))
    for old, new in (("sampling_steps", "sample_steps"), ("spacing", "sample_spacing"), ("eta", "ddim_eta"),
                     ("timesteps", "num_timesteps")):
        with pytest.raises(UsageError, match=f"'{old}' is now called '{new}'"):
            reject_renamed("ddpm", {old: 3})
    reject_renamed("ddpm", {"sample_steps": 3})
