"""Samplers: functions of (process, model function) that walk a chain from x_T ~ N(0, I) to x_0.

Every sampler walks the steps of the :class:`~genbench.diffusion.process.GaussianDiffusion` it is
given (respace it first for fewer steps), from its last index down to 0, and runs the network
through ``process.run_model`` so that it is fed the *original* timesteps it was trained on.

- ``ancestral``: x_{s-1} ~ N(mu_theta, Sigma_theta) with the process's variance type (Ho et
  al.; the MT-DDPM paper's sampler with the learned variance);
- ``ddim``: Song et al.'s DDIM with ``eta`` (0 = deterministic, 1 = ancestral with betatilde);
  uses eps only;
- ``dpm-solver++``: Lu et al.'s DPM-Solver++(2M), multistep, data prediction; uses eps only.

None replaces another silently: the caller names one. All noise comes from ``generator``
(drawn on its device, then moved), so a seed gives the same images on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from genbench.diffusion.process import GaussianDiffusion, ModelFn


def _t(i: int, batch: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), i, dtype=torch.long, device=device)


def _noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev).to(device)


def _start(shape, generator, device, x_T):
    return _noise(shape, generator, device) if x_T is None else x_T.to(device)


@torch.no_grad()
def ancestral_sample(
    process: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    device = torch.device(device)
    x = _start(shape, generator, device, x_T)
    for i in reversed(range(process.num_timesteps)):
        t = _t(i, shape[0], device)
        out = process.run_model(model_fn, x, t).float()
        p = process.p_mean_variance(out, x, t, clip_denoised=clip_denoised)
        if i > 0:
            x = p["mean"] + torch.exp(0.5 * p["log_variance"]) * _noise(shape, generator, device)
        else:
            x = p["mean"]
    return x


@torch.no_grad()
def ddim_sample(
    process: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    device = torch.device(device)
    x = _start(shape, generator, device, x_T)
    abar, abar_prev = process.alphas_cumprod, process.alphas_cumprod_prev
    for i in reversed(range(process.num_timesteps)):
        t = _t(i, shape[0], device)
        eps, _ = process.split_output(process.run_model(model_fn, x, t).float(), shape[1])
        x0 = process.predict_x0(x, t, eps)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
            # keep eps consistent with the clipped x0, so the step stays on the DDIM path
            eps = process.predict_eps(x, t, x0)
        a, ap = float(abar[i]), float(abar_prev[i])
        sigma = eta * math.sqrt((1.0 - ap) / (1.0 - a)) * math.sqrt(1.0 - a / ap)
        x = math.sqrt(ap) * x0 + math.sqrt(max(1.0 - ap - sigma**2, 0.0)) * eps
        if i > 0 and sigma > 0:
            x = x + sigma * _noise(shape, generator, device)
    return x


@torch.no_grad()
def dpm_solver_pp_2m_sample(
    process: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
    lower_order_final: bool = True,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) on the chain's own timesteps, ending with a first-order step to sigma = 0.

    One network evaluation per kept step. With ``lower_order_final`` (as in diffusers, for fewer
    than 15 steps) the step into the last kept timestep is first order, which is more stable.
    """
    device = torch.device(device)
    x = _start(shape, generator, device, x_T)
    abar = process.alphas_cumprod
    alpha, sigma = torch.sqrt(abar), torch.sqrt(1.0 - abar)
    lam = torch.log(alpha) - torch.log(sigma)
    n = process.num_timesteps
    d_prev: torch.Tensor | None = None
    h_prev = 0.0
    for i in reversed(range(n)):
        t = _t(i, shape[0], device)
        eps, _ = process.split_output(process.run_model(model_fn, x, t).float(), shape[1])
        d = process.predict_x0(x, t, eps)
        if clip_denoised:
            d = d.clamp(-1.0, 1.0)
        if i == 0:
            # sigma_target = 0: the exponential integrator's limit is the data prediction itself
            return d
        j = i - 1
        h = float(lam[j] - lam[i])
        first_order = d_prev is None or (lower_order_final and j == 0 and n < 15)
        if first_order:
            dd = d
        else:
            r = h_prev / h
            dd = (1.0 + 0.5 / r) * d - (0.5 / r) * d_prev
        x = float(sigma[j] / sigma[i]) * x - float(alpha[j]) * math.expm1(-h) * dd
        d_prev, h_prev = d, h
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ancestral": ancestral_sample,
    "ddim": ddim_sample,
    "dpm-solver++": dpm_solver_pp_2m_sample,
}


def run_sampler(
    name: str,
    process: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    eta: float = 0.0,
    **kwargs,
) -> torch.Tensor:
    """Sample ``shape`` with the sampler called ``name`` (``eta`` is used by DDIM only)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if name == "ddim":
        kwargs["eta"] = eta
    return SAMPLERS[name](process, model_fn, shape, **kwargs)
