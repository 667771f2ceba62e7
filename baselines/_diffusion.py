"""Gaussian diffusion for the DDPM baseline (Ho et al. 2020; DDIM of Song et al. 2021).

Conventions: timesteps are 0-based, ``t = 0 .. T-1``; ``alpha_bar[t] = prod_{i<=t} (1 - beta_i)``.
Forward: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``. The network predicts ``eps``.
Schedule coefficients are computed in float64 and cast when used.

Samplers take ``eps_fn(x, t) -> eps`` (``t`` a (B,) long tensor of *original* timesteps) and a
CPU ``torch.Generator`` for all noise, drawn on the CPU and moved, so samples do not depend on
the device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genbench.errors import UsageError

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al.'s linear schedule (float64)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


SPACINGS = ("uniform", "quadratic")


def spaced_timesteps(T: int, steps: int, spacing: str = "uniform") -> list[int]:
    """Increasing timesteps from 0 to T-1: ``steps`` evenly spaced (``uniform``), or evenly
    spaced in sqrt(t) (``quadratic``, as DDIM used for CIFAR-10: denser near t = 0, where
    coarse steps lose the most; duplicates at the low end are merged, so it may give a few
    fewer than ``steps``)."""
    if not 1 <= steps <= T:
        raise UsageError(f"sampling steps must be between 1 and {T}, got {steps}")
    if spacing not in SPACINGS:
        raise UsageError(f"timestep spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if steps == 1:
        return [T - 1]
    if spacing == "uniform":
        ts = torch.linspace(0, T - 1, steps, dtype=torch.float64)
    else:
        ts = torch.linspace(0, (T - 1) ** 0.5, steps, dtype=torch.float64) ** 2
    return sorted(set(ts.round().long().tolist()))


def _gather(coef: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return coef.to(like.device)[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)


class GaussianDiffusion:
    """A noise schedule plus q-sampling, the true posterior, and two samplers."""

    def __init__(self, betas: torch.Tensor) -> None:
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or (betas <= 0).any() or (betas >= 1).any():
            raise UsageError("betas must be a 1-D tensor in (0, 1)")
        self.T = len(betas)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        # Posterior q(x_{t-1} | x_t, x_0) = N(c0 x_0 + ct x_t, betatilde_t).
        self.posterior_var = betas * (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar)
        self.posterior_c0 = betas * self.alpha_bar_prev.sqrt() / (1.0 - self.alpha_bar)
        self.posterior_ct = (1.0 - self.alpha_bar_prev) * self.alphas.sqrt() / (1.0 - self.alpha_bar)

    # -- forward process ---------------------------------------------------------------------

    def q_mean_var(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_t | x_0)."""
        ab = _gather(self.alpha_bar, t, x0)
        return ab.sqrt() * x0, (1.0 - ab).expand_as(x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ab = _gather(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps

    def posterior(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0)."""
        mean = _gather(self.posterior_c0, t, xt) * x0 + _gather(self.posterior_ct, t, xt) * xt
        return mean, _gather(self.posterior_var, t, xt).expand_as(xt)

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ab = _gather(self.alpha_bar, t, xt)
        return (xt - (1.0 - ab).sqrt() * eps) / ab.sqrt()

    def training_loss(self, eps_fn: EpsFn, x0: torch.Tensor) -> torch.Tensor:
        """Ho et al.'s simple loss: MSE between eps and its prediction at a uniform t."""
        t = torch.randint(0, self.T, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        return torch.mean((eps_fn(self.q_sample(x0, t, eps), t) - eps) ** 2)

    # -- samplers ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample_ancestral(
        self,
        eps_fn: EpsFn,
        shape: tuple[int, ...],
        generator: torch.Generator,
        *,
        device: torch.device | str = "cpu",
        steps: int | None = None,
        spacing: str = "uniform",
        clip_denoised: bool = True,
        variance: str = "posterior",
    ) -> torch.Tensor:
        """Ancestral sampling p(x_{t-1} | x_t) from x_T ~ N(0, I).

        With ``steps < T`` the chain runs on evenly spaced timesteps with respaced betas
        ``beta_s = 1 - abar_s / abar_{s_prev}`` (a DDPM of its own on the sub-sequence).
        ``spacing``: see :func:`spaced_timesteps`. ``variance``: ``"posterior"`` (betatilde) or
        ``"beta"``. ``clip_denoised`` clips the
        x_0 implied by eps to [-1, 1] before forming the posterior mean (as Ho et al. do).
        """
        if variance not in ("posterior", "beta"):
            raise UsageError(f"variance must be 'posterior' or 'beta', got {variance!r}")
        device = torch.device(device)
        ts = spaced_timesteps(self.T, steps or self.T, spacing)
        ab = self.alpha_bar[ts]
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        betas = 1.0 - ab / ab_prev
        post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
        c0 = betas * ab_prev.sqrt() / (1.0 - ab)
        ct = (1.0 - ab_prev) * (1.0 - betas).sqrt() / (1.0 - ab)
        var = post_var if variance == "posterior" else betas

        x = _noise(shape, generator, device)
        for i in reversed(range(len(ts))):
            t = torch.full((shape[0],), ts[i], device=device, dtype=torch.long)
            eps = eps_fn(x, t).to(torch.float32)
            x0 = (x - (1.0 - ab[i]).sqrt().item() * eps) / ab[i].sqrt().item()
            if clip_denoised:
                x0 = x0.clamp(-1.0, 1.0)
            mean = c0[i].item() * x0 + ct[i].item() * x
            if i > 0:
                x = mean + var[i].sqrt().item() * _noise(shape, generator, device)
            else:
                x = mean
        return x

    @torch.no_grad()
    def sample_ddim(
        self,
        eps_fn: EpsFn,
        shape: tuple[int, ...],
        generator: torch.Generator,
        *,
        device: torch.device | str = "cpu",
        steps: int = 50,
        spacing: str = "uniform",
        eta: float = 0.0,
        clip_denoised: bool = True,
    ) -> torch.Tensor:
        """DDIM (Song et al. 2021) on ``steps`` timesteps (``spacing``); ``eta=0`` is
        deterministic given x_T, ``eta=1`` is the respaced ancestral sampler."""
        device = torch.device(device)
        ts = spaced_timesteps(self.T, steps, spacing)
        x = _noise(shape, generator, device)
        for i in reversed(range(len(ts))):
            a = self.alpha_bar[ts[i]].item()
            a_prev = self.alpha_bar[ts[i - 1]].item() if i > 0 else 1.0
            t = torch.full((shape[0],), ts[i], device=device, dtype=torch.long)
            eps = eps_fn(x, t).to(torch.float32)
            x0 = (x - (1.0 - a) ** 0.5 * eps) / a**0.5
            if clip_denoised:
                x0 = x0.clamp(-1.0, 1.0)
                # Keep eps consistent with the clipped x0, so the step stays on the DDIM path.
                eps = (x - a**0.5 * x0) / (1.0 - a) ** 0.5
            sigma = eta * ((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)) ** 0.5
            x = a_prev**0.5 * x0 + max(1.0 - a_prev - sigma**2, 0.0) ** 0.5 * eps
            if sigma > 0 and i > 0:
                x = x + sigma * _noise(shape, generator, device)
        return x
