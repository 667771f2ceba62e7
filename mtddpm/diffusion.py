"""Gaussian diffusion with a learned-range variance (Ho et al. 2020; Nichol & Dhariwal 2021).

Conventions: timesteps are 0-indexed, ``t = 0 .. T-1``; ``abar[t] = prod_{i<=t} (1 - beta[i])``
and ``abar_prev[0] = 1``, so ``t = 0`` is the decoder step whose loss is the discretised-Gaussian
NLL. A respaced process (a subset of the training steps) is another :class:`GaussianDiffusion`
whose betas are recomputed from ``abar`` (``beta_s = 1 - abar_s / abar_{s_prev}``) and whose
``timestep_map`` sends its own indices back to the training indices the network was trained on.

All schedule arrays are held in float64 and only cast to the working dtype when gathered:
with T = 4000 the smallest betas are ~2.5e-5 and ``1 - abar`` near t = 0 loses digits in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# ------------------------------------------------------------------------------------------
# schedules


def linear_betas(num_timesteps: int) -> np.ndarray:
    """Ho et al.'s linear schedule, scaled so that any T spans the same total noise as T=1000."""
    scale = 1000.0 / num_timesteps
    if scale * 0.02 >= 1.0:
        raise ValueError(
            f"the scaled linear schedule needs T > 20 (its last beta would be {scale * 0.02:.2f}); "
            "use the cosine schedule for very short chains"
        )
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule: abar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2)."""

    def f(t: np.ndarray) -> np.ndarray:
        return np.cos((t / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    t = np.arange(num_timesteps + 1, dtype=np.float64)
    abar = f(t) / f(np.zeros(1))
    return np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)


def make_betas(schedule: str, num_timesteps: int) -> np.ndarray:
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if schedule == "linear":
        return linear_betas(num_timesteps)
    if schedule == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"unknown noise schedule {schedule!r}; choose 'linear' or 'cosine'")


def space_timesteps(num_timesteps: int, count: int | Sequence[int]) -> list[int]:
    """``count`` evenly spaced training steps (first and last included), or an explicit subset."""
    if isinstance(count, int):
        if not 1 <= count <= num_timesteps:
            raise ValueError(f"cannot keep {count} of {num_timesteps} timesteps")
        if count == 1:
            return [num_timesteps - 1]
        kept = np.round(np.linspace(0, num_timesteps - 1, count)).astype(np.int64)
        return sorted({int(k) for k in kept})
    kept = sorted({int(k) for k in count})
    if not kept or kept[0] < 0 or kept[-1] >= num_timesteps:
        raise ValueError(f"timestep subset must lie in [0, {num_timesteps - 1}], got {kept[:5]}...")
    return kept


# ------------------------------------------------------------------------------------------
# Gaussian helpers


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of Phi used by Ho et al. (error below ~3e-4)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def exact_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor,
    mean: torch.Tensor,
    log_scale: torch.Tensor,
    *,
    bin_half_width: float = 1.0 / 255.0,
    cdf: str = "tanh",
) -> torch.Tensor:
    """log P(x) for data on [-1, 1] quantised into bins of half-width ``bin_half_width``.

    Interior bins integrate the Gaussian over [x - w, x + w]; the two edge bins take the whole
    tail beyond them (so the bins sum to one). ``log_scale`` is the log standard deviation.
    """
    if cdf == "tanh":
        phi = approx_standard_normal_cdf
    elif cdf == "erf":
        phi = exact_standard_normal_cdf
    else:
        raise ValueError(f"cdf must be 'tanh' or 'erf', got {cdf!r}")
    w = float(bin_half_width)
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = phi(inv_std * (centered + w))
    cdf_min = phi(inv_std * (centered - w))
    eps = 1e-12
    log_cdf_plus = torch.log(cdf_plus.clamp(min=eps))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=eps))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=eps))
    return torch.where(
        x < -1.0 + w,
        log_cdf_plus,
        torch.where(x > 1.0 - w, log_one_minus_cdf_min, log_delta),
    )


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def _gather(arr: torch.Tensor, t: torch.Tensor, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    """arr[t] shaped (B, 1, 1, ...) for broadcasting against a (B, ...) tensor."""
    out = arr.to(t.device)[t].to(dtype)
    return out.reshape(-1, *([1] * (ndim - 1)))


# ------------------------------------------------------------------------------------------
# the process


@dataclass
class HybridLoss:
    loss: torch.Tensor  # (B,) total per-sample loss
    mse: torch.Tensor  # (B,)
    vlb: torch.Tensor  # (B,) in bits per dimension


class GaussianDiffusion:
    """One discrete forward process and the learned-range reverse process on it."""

    def __init__(self, betas: np.ndarray, timestep_map: Sequence[int] | None = None) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-D array in (0, 1]")
        self.num_timesteps = len(betas)
        self.timestep_map = torch.as_tensor(
            np.arange(self.num_timesteps) if timestep_map is None else np.asarray(timestep_map),
            dtype=torch.long,
        )
        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        abar_prev = np.append(1.0, abar[:-1])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        # betatilde_0 = 0: clip its log to betatilde_1 (as improved-diffusion does) so that
        # the interpolation in log space stays finite at t = 0.
        post_log_var = np.log(np.append(post_var[1], post_var[1:])) if len(betas) > 1 else np.log(betas)

        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)
        self.betas = as_t(betas)
        self.alphas_cumprod = as_t(abar)
        self.alphas_cumprod_prev = as_t(abar_prev)
        self.sqrt_alphas_cumprod = as_t(np.sqrt(abar))
        self.sqrt_one_minus_alphas_cumprod = as_t(np.sqrt(1.0 - abar))
        self.sqrt_recip_alphas_cumprod = as_t(np.sqrt(1.0 / abar))
        self.sqrt_recipm1_alphas_cumprod = as_t(np.sqrt(1.0 / abar - 1.0))
        self.posterior_variance = as_t(post_var)
        self.posterior_log_variance_clipped = as_t(post_log_var)
        self.log_betas = as_t(np.log(betas))
        self.posterior_mean_coef1 = as_t(betas * np.sqrt(abar_prev) / (1.0 - abar))
        self.posterior_mean_coef2 = as_t((1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar))

    @classmethod
    def from_schedule(cls, schedule: str, num_timesteps: int) -> GaussianDiffusion:
        return cls(make_betas(schedule, num_timesteps))

    # -- respacing ---------------------------------------------------------------------

    def kept_timesteps(self, count: int, spacing: str = "uniform") -> list[int]:
        """Which ``count`` of this chain's steps to keep.

        ``uniform``: evenly spaced in t (the paper's 500 of 4000). ``quadratic``: denser near
        t = 0 (DDIM's choice for small images). ``logsnr``: evenly spaced in
        lambda = log(sqrt(abar) / sqrt(1 - abar)), what DPM-Solver needs to be accurate at
        ~20 steps. Non-uniform spacings may keep slightly fewer steps when two targets round to
        the same index.
        """
        n = self.num_timesteps
        if not 1 <= count <= n:
            raise ValueError(f"cannot keep {count} of {n} timesteps")
        if spacing == "uniform":
            return space_timesteps(n, count)
        if spacing == "quadratic":
            kept = np.round(np.linspace(0.0, math.sqrt(n - 1), count) ** 2).astype(np.int64)
            return space_timesteps(n, kept.tolist())
        if spacing == "logsnr":
            abar = self.alphas_cumprod.numpy()
            lam = 0.5 * (np.log(abar) - np.log1p(-abar))  # decreasing in t
            targets = np.linspace(lam[-1], lam[0], count)
            # lam is monotone: search on the reversed (increasing) array
            idx = np.searchsorted(lam[::-1], targets).clip(1, n - 1)
            lo, hi = lam[::-1][idx - 1], lam[::-1][idx]
            pick = np.where(np.abs(targets - lo) <= np.abs(hi - targets), idx - 1, idx)
            return space_timesteps(n, (n - 1 - pick).tolist())
        raise ValueError(f"unknown spacing {spacing!r}; choose uniform, quadratic or logsnr")

    def respace(self, use_timesteps: int | Sequence[int], spacing: str = "uniform") -> GaussianDiffusion:
        """The process restricted to a subset of steps; betas recomputed from abar.

        ``use_timesteps`` is a count (spread by ``spacing``) or an explicit list of indices.
        The kept steps' abar equal this process's abar at those steps, so a variance learned
        between beta_t and betatilde_t keeps its meaning on the shorter chain.
        """
        if isinstance(use_timesteps, int):
            kept = self.kept_timesteps(use_timesteps, spacing)
        else:
            kept = space_timesteps(self.num_timesteps, use_timesteps)
        abar = self.alphas_cumprod.numpy()
        new_betas, last = [], 1.0
        for k in kept:
            new_betas.append(1.0 - abar[k] / last)
            last = abar[k]
        base_map = self.timestep_map.numpy()
        return GaussianDiffusion(np.array(new_betas), timestep_map=base_map[kept])

    # -- forward process ---------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        n, dt = x0.ndim, x0.dtype
        return _gather(self.sqrt_alphas_cumprod, t, n, dt) * x0 + _gather(
            self.sqrt_one_minus_alphas_cumprod, t, n, dt
        ) * noise

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor):
        n, dt = x0.ndim, x0.dtype
        mean = _gather(self.sqrt_alphas_cumprod, t, n, dt) * x0
        var = _gather(1.0 - self.alphas_cumprod, t, n, dt)
        return mean, var, torch.log(var)

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x_0)."""
        n, dt = xt.ndim, xt.dtype
        mean = _gather(self.posterior_mean_coef1, t, n, dt) * x0 + _gather(
            self.posterior_mean_coef2, t, n, dt
        ) * xt
        var = _gather(self.posterior_variance, t, n, dt).expand_as(xt)
        logvar = _gather(self.posterior_log_variance_clipped, t, n, dt).expand_as(xt)
        return mean, var, logvar

    # -- reverse process ---------------------------------------------------------------

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        n, dt = xt.ndim, xt.dtype
        return _gather(self.sqrt_recip_alphas_cumprod, t, n, dt) * xt - _gather(
            self.sqrt_recipm1_alphas_cumprod, t, n, dt
        ) * eps

    def predict_eps(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        n, dt = xt.ndim, xt.dtype
        return (_gather(self.sqrt_recip_alphas_cumprod, t, n, dt) * xt - x0) / _gather(
            self.sqrt_recipm1_alphas_cumprod, t, n, dt
        )

    def model_log_variance(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log Sigma = frac log beta_t + (1 - frac) log betatilde_t with frac = (v + 1) / 2."""
        n, dt = v.ndim, v.dtype
        frac = (v + 1.0) / 2.0
        max_log = _gather(self.log_betas, t, n, dt)
        min_log = _gather(self.posterior_log_variance_clipped, t, n, dt)
        return frac * max_log + (1.0 - frac) * min_log

    def p_mean_variance(
        self,
        xt: torch.Tensor,
        t: torch.Tensor,
        eps: torch.Tensor,
        v: torch.Tensor,
        *,
        clip_denoised: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Mean and log variance of p(x_{t-1} | x_t) from the network's (eps, v).

        Without clipping the mean equals eq. 15, (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t);
        with ``clip_denoised`` the predicted x_0 is clamped to [-1, 1] before the posterior mean.
        """
        x0 = self.predict_x0(xt, t, eps)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior(x0, xt, t)
        return {"mean": mean, "log_variance": self.model_log_variance(v, t), "pred_x0": x0}

    # -- losses ------------------------------------------------------------------------

    def vlb_terms(
        self,
        x0: torch.Tensor,
        xt: torch.Tensor,
        t: torch.Tensor,
        eps: torch.Tensor,
        v: torch.Tensor,
        *,
        bin_half_width: float = 1.0 / 255.0,
        cdf: str = "tanh",
    ) -> torch.Tensor:
        """L_vlb(t) per sample in bits/dim: KL to the true posterior (t > 0), decoder NLL (t = 0).

        ``eps`` should be detached by the caller when the VLB is to train only the variance.
        """
        true_mean, _, true_logvar = self.q_posterior(x0, xt, t)
        out = self.p_mean_variance(xt, t, eps, v)
        kl = mean_flat(normal_kl(true_mean, true_logvar, out["mean"], out["log_variance"]))
        nll = -mean_flat(
            discretized_gaussian_log_likelihood(
                x0, out["mean"], 0.5 * out["log_variance"], bin_half_width=bin_half_width, cdf=cdf
            )
        )
        return torch.where(t == 0, nll, kl) / math.log(2.0)

    def hybrid_loss(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        model_out: tuple[torch.Tensor, torch.Tensor],
        xt: torch.Tensor,
        *,
        gamma: float = 0.01,
        bin_half_width: float = 1.0 / 255.0,
        cdf: str = "tanh",
    ) -> HybridLoss:
        """L = MSE(eps, eps_theta) + gamma * L_vlb, the mean detached inside L_vlb."""
        eps, v = model_out
        mse = mean_flat((noise - eps) ** 2)
        vlb = self.vlb_terms(
            x0, xt, t, eps.detach(), v, bin_half_width=bin_half_width, cdf=cdf
        )
        return HybridLoss(loss=mse + gamma * vlb, mse=mse, vlb=vlb)


# ------------------------------------------------------------------------------------------
# timestep samplers for training


class UniformTimestepSampler:
    def __init__(self, num_timesteps: int) -> None:
        self.num_timesteps = num_timesteps

    def sample(self, batch: int, generator: torch.Generator | None = None):
        t = torch.randint(0, self.num_timesteps, (batch,), generator=generator)
        return t, torch.ones(batch)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None


class SecondMomentTimestepSampler:
    """Importance sampling of t with p_t proportional to sqrt(E[L_t^2]) (Nichol & Dhariwal).

    Uniform until every t has ``history`` recorded losses; then mixes in ``uniform_prob`` of
    the uniform law so that no step is starved. Weights 1 / (T p_t) keep the loss unbiased.
    """

    def __init__(self, num_timesteps: int, history: int = 10, uniform_prob: float = 0.001) -> None:
        self.num_timesteps = num_timesteps
        self.history = history
        self.uniform_prob = uniform_prob
        self.losses = torch.zeros(num_timesteps, history, dtype=torch.float64)
        self.counts = torch.zeros(num_timesteps, dtype=torch.long)

    def probabilities(self) -> torch.Tensor:
        if not bool((self.counts >= self.history).all()):
            return torch.full((self.num_timesteps,), 1.0 / self.num_timesteps, dtype=torch.float64)
        w = torch.sqrt((self.losses**2).mean(dim=1))
        w = w / w.sum()
        return w * (1.0 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def sample(self, batch: int, generator: torch.Generator | None = None):
        p = self.probabilities()
        t = torch.multinomial(p, batch, replacement=True, generator=generator)
        weights = (1.0 / (self.num_timesteps * p[t])).to(torch.float32)
        return t, weights

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        for ti, li in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            if self.counts[ti] >= self.history:
                self.losses[ti] = torch.roll(self.losses[ti], -1)
                self.losses[ti, -1] = li
            else:
                self.losses[ti, self.counts[ti]] = li
            self.counts[ti] += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"losses": self.losses.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.losses = state["losses"].to(torch.float64).clone()
        self.counts = state["counts"].to(torch.long).clone()


def make_timestep_sampler(name: str, num_timesteps: int):
    if name == "uniform":
        return UniformTimestepSampler(num_timesteps)
    if name == "second-moment":
        return SecondMomentTimestepSampler(num_timesteps)
    raise ValueError(f"unknown timestep sampler {name!r}; choose 'uniform' or 'second-moment'")


__all__ = [
    "GaussianDiffusion",
    "HybridLoss",
    "SecondMomentTimestepSampler",
    "UniformTimestepSampler",
    "approx_standard_normal_cdf",
    "cosine_betas",
    "discretized_gaussian_log_likelihood",
    "exact_standard_normal_cdf",
    "linear_betas",
    "make_betas",
    "make_timestep_sampler",
    "mean_flat",
    "normal_kl",
    "space_timesteps",
]
