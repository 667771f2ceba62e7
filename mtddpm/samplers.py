"""Samplers for an (eps, v)-predicting network on a (possibly respaced) diffusion chain.

Every sampler walks the steps of the :class:`~mtddpm.diffusion.GaussianDiffusion` it is given,
from its last index down to 0, and calls ``model_fn(x, t_train)`` with the *training* timestep
(``process.timestep_map``) because that is what the network's embedding was trained on.

- ``ancestral``: the paper's sampler; x_{s-1} ~ N(mu_theta, Sigma_theta) on the respaced chain,
  Sigma from the learned v (so it needs both outputs).
- ``ddim``: Song et al.'s DDIM with ``eta`` (0 = deterministic); uses eps only.
- ``dpm-solver++``: Lu et al.'s DPM-Solver++(2M), multistep, data prediction; uses eps only.

None replaces another silently: the caller names one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mtddpm.diffusion import GaussianDiffusion

ModelFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _t(process: GaussianDiffusion, i: int, batch: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), i, dtype=torch.long, device=device)


def _noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    # Draw on the generator's device so that a seed means the same numbers on every run.
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev).to(device)


@torch.no_grad()
def ancestral_sample(
    model_fn: ModelFn,
    process: GaussianDiffusion,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    device = torch.device(device)
    x = _noise(shape, generator, device) if x_T is None else x_T.to(device)
    tmap = process.timestep_map.to(device)
    for i in reversed(range(process.num_timesteps)):
        t = _t(process, i, shape[0], device)
        eps, v = model_fn(x, tmap[t])
        out = process.p_mean_variance(x, t, eps, v, clip_denoised=clip_denoised)
        if i > 0:
            x = out["mean"] + torch.exp(0.5 * out["log_variance"]) * _noise(shape, generator, device)
        else:
            x = out["mean"]
    return x


@torch.no_grad()
def ddim_sample(
    model_fn: ModelFn,
    process: GaussianDiffusion,
    shape: tuple[int, ...],
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    device = torch.device(device)
    x = _noise(shape, generator, device) if x_T is None else x_T.to(device)
    tmap = process.timestep_map.to(device)
    abar = process.alphas_cumprod
    abar_prev = process.alphas_cumprod_prev
    for i in reversed(range(process.num_timesteps)):
        t = _t(process, i, shape[0], device)
        eps, _ = model_fn(x, tmap[t])
        x0 = process.predict_x0(x, t, eps)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
            eps = process.predict_eps(x, t, x0)
        a, ap = float(abar[i]), float(abar_prev[i])
        sigma = eta * math.sqrt((1.0 - ap) / (1.0 - a)) * math.sqrt(1.0 - a / ap)
        x = math.sqrt(ap) * x0 + math.sqrt(max(1.0 - ap - sigma**2, 0.0)) * eps
        if i > 0 and sigma > 0:
            x = x + sigma * _noise(shape, generator, device)
    return x


@torch.no_grad()
def dpm_solver_pp_2m_sample(
    model_fn: ModelFn,
    process: GaussianDiffusion,
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
    x = _noise(shape, generator, device) if x_T is None else x_T.to(device)
    tmap = process.timestep_map.to(device)
    abar = process.alphas_cumprod.double()
    alpha = torch.sqrt(abar)
    sigma = torch.sqrt(1.0 - abar)
    lam = torch.log(alpha) - torch.log(sigma)
    n = process.num_timesteps
    d_prev: torch.Tensor | None = None
    h_prev: float | None = None
    for i in reversed(range(n)):
        t = _t(process, i, shape[0], device)
        eps, _ = model_fn(x, tmap[t])
        d = process.predict_x0(x, t, eps)
        if clip_denoised:
            d = d.clamp(-1.0, 1.0)
        if i == 0:
            # sigma_target = 0: the exponential integrator's limit is the data prediction itself.
            x = d
            break
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
    model_fn: ModelFn,
    process: GaussianDiffusion,
    shape: tuple[int, ...],
    *,
    eta: float = 0.0,
    **kwargs,
) -> torch.Tensor:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if name == "ddim":
        kwargs["eta"] = eta
    return SAMPLERS[name](model_fn, process, shape, **kwargs)
