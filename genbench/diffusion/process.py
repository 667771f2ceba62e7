"""The Gaussian diffusion process: forward noising, the reverse step and the training losses.

One class holds all the diffusion math for every diffusion model in genbench (as
improved-diffusion's ``GaussianDiffusion`` does); what differs between models is a *variance
type* and a *loss type*, not a second copy of the process:

- ``variance_type``: ``fixed-small`` (Sigma = betatilde_t, Ho et al.'s choice for sampling),
  ``fixed-large`` (Sigma = beta_t) or ``learned-range`` (the network's second output v sets
  ``log Sigma = f log beta_t + (1 - f) log betatilde_t`` with ``f = (v + 1) / 2``;
  Nichol & Dhariwal 2021, the MT-DDPM paper's eq. 16);
- ``loss_type``: ``mse`` (Ho et al.'s simple loss, MSE between eps and its prediction) or
  ``hybrid`` (``MSE + vlb_weight * L_vlb``, L_vlb in bits per dimension with the predicted mean
  detached, so that it trains only the variance; needs ``learned-range``).
  ``vlb_weight`` is a number (the paper's gamma = 0.01) or ``"rescaled"``, improved-diffusion's
  ``RESCALED_MSE``: ``num_timesteps / 1000`` of *this* chain (0.05 on the authors' 50-step chain).

Conventions: timesteps are 0-indexed, ``t = 0 .. T-1``; ``abar[t] = prod_{i<=t} (1 - beta[i])``
and ``abar_prev[0] = 1``, so ``t = 0`` is the decoder step, whose L_vlb term is the
discretised-Gaussian NLL. A *respaced* process (:mod:`genbench.diffusion.respace`) is another
instance of this class on a subset of the training steps; ``timestep_map`` sends its indices
back to the original ones and :meth:`model_timesteps` is what the network is fed, so one
network serves every chain derived from the one it was trained on.

Network outputs are raw tensors: C channels (eps) for fixed variances, 2C (eps, v) for
``learned-range``. A *model function* is ``model_fn(x_t, timesteps) -> output``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genbench.diffusion.likelihood import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from genbench.diffusion.schedules import make_betas

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
VARIANCE_TYPES = ("fixed-small", "fixed-large", "learned-range")
LOSS_TYPES = ("mse", "hybrid")


def _gather(arr: torch.Tensor, t: torch.Tensor, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    """arr[t] shaped (B, 1, 1, ...) for broadcasting against a (B, ...) tensor."""
    out = arr.to(t.device)[t].to(dtype)
    return out.reshape(-1, *([1] * (ndim - 1)))


@dataclass
class Losses:
    loss: torch.Tensor  # (B,) total per-sample loss
    mse: torch.Tensor  # (B,)
    vlb: torch.Tensor | None  # (B,) in bits per dimension (hybrid loss only)


class GaussianDiffusion:
    """One discrete forward process and the reverse process of a given variance type on it."""

    def __init__(
        self,
        betas: np.ndarray | Sequence[float],
        *,
        variance_type: str = "fixed-small",
        loss_type: str = "mse",
        vlb_weight: float | str = 0.01,
        bin_half_width: float = 1.0 / 255.0,
        cdf: str = "tanh",
        timestep_map: Sequence[int] | None = None,
        original_num_steps: int | None = None,
        rescale_timesteps: bool = False,
    ) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or len(betas) == 0 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a non-empty 1-D array in (0, 1]")
        if variance_type not in VARIANCE_TYPES:
            raise ValueError(f"variance type must be one of {', '.join(VARIANCE_TYPES)}, got {variance_type!r}")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
        if loss_type == "hybrid" and variance_type != "learned-range":
            raise ValueError("the hybrid loss trains a learned variance: it needs variance type learned-range")
        if isinstance(vlb_weight, str):
            if vlb_weight != "rescaled":
                raise ValueError(f"vlb weight must be a number >= 0 or 'rescaled', got {vlb_weight!r}")
        elif not vlb_weight >= 0:
            raise ValueError(f"vlb weight must be >= 0, got {vlb_weight}")
        if bin_half_width <= 0:
            raise ValueError(f"bin half-width must be > 0, got {bin_half_width}")
        self.variance_type = variance_type
        self.loss_type = loss_type
        self.vlb_weight_option = vlb_weight
        self.bin_half_width = float(bin_half_width)
        self.cdf = cdf
        self.rescale_timesteps = bool(rescale_timesteps)

        self.num_timesteps = len(betas)
        tmap = np.arange(self.num_timesteps) if timestep_map is None else np.asarray(timestep_map)
        if tmap.shape != (self.num_timesteps,):
            raise ValueError("timestep_map needs one entry per beta")
        self.timestep_map = torch.as_tensor(tmap, dtype=torch.long)
        self.original_num_steps = int(original_num_steps or self.num_timesteps)

        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        abar_prev = np.append(1.0, abar[:-1])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        # betatilde_0 = 0: clip its log to betatilde_1 (as improved-diffusion does) so that the
        # interpolation in log space stays finite at t = 0.
        post_log_var = np.log(np.append(post_var[1], post_var[1:])) if len(betas) > 1 else np.log(betas)
        # fixed-large uses beta_t, except betatilde_1 at t = 0 (a better decoder variance).
        large_var = np.append(post_var[1], betas[1:]) if len(betas) > 1 else betas

        def as_t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.float64)

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
        self.large_variance = as_t(large_var)
        self.posterior_mean_coef1 = as_t(betas * np.sqrt(abar_prev) / (1.0 - abar))
        self.posterior_mean_coef2 = as_t((1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar))

    @classmethod
    def from_schedule(cls, schedule: str, num_timesteps: int, **kwargs) -> GaussianDiffusion:
        return cls(make_betas(schedule, num_timesteps), **kwargs)

    def options(self) -> dict:
        """The constructor's keyword options (a respaced chain keeps them)."""
        return dict(
            variance_type=self.variance_type, loss_type=self.loss_type,
            vlb_weight=self.vlb_weight_option, bin_half_width=self.bin_half_width, cdf=self.cdf,
            rescale_timesteps=self.rescale_timesteps,
        )

    @property
    def vlb_weight(self) -> float:
        """The factor on L_vlb in the hybrid loss on this chain."""
        if self.vlb_weight_option == "rescaled":
            return self.num_timesteps / 1000.0
        return float(self.vlb_weight_option)

    @property
    def output_channels_per_image_channel(self) -> int:
        return 2 if self.variance_type == "learned-range" else 1

    # -- what the network sees ---------------------------------------------------------

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The network's time input for this chain's indices ``t``: the original step index,
        times 1000/T_original when ``rescale_timesteps`` (improved-diffusion's convention,
        used by the MT-DDPM authors), as float."""
        out = self.timestep_map.to(t.device)[t].to(torch.float32)
        if self.rescale_timesteps:
            out = out * (1000.0 / self.original_num_steps)
        return out

    def run_model(self, model_fn: ModelFn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model_fn(x, self.model_timesteps(t))

    def split_output(self, out: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(eps, v) from a raw network output; v is None for fixed variances."""
        if self.variance_type == "learned-range":
            if out.shape[1] != 2 * channels:
                raise ValueError(f"learned-range needs 2 x {channels} output channels, got {out.shape[1]}")
            eps, v = out[:, :channels], out[:, channels:]
            return eps, v
        if out.shape[1] != channels:
            raise ValueError(f"a fixed variance needs {channels} output channels, got {out.shape[1]}")
        return out, None

    # -- forward process ---------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        n, dt = x0.ndim, x0.dtype
        return _gather(self.sqrt_alphas_cumprod, t, n, dt) * x0 + _gather(
            self.sqrt_one_minus_alphas_cumprod, t, n, dt
        ) * noise

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor):
        """Mean, variance and log variance of q(x_t | x_0)."""
        n, dt = x0.ndim, x0.dtype
        mean = _gather(self.sqrt_alphas_cumprod, t, n, dt) * x0
        var = _gather(1.0 - self.alphas_cumprod, t, n, dt).expand_as(x0)
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

    def model_log_variance(self, v: torch.Tensor | None, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """log Sigma_theta for this variance type (``v`` only for learned-range)."""
        n, dt = like.ndim, like.dtype
        if self.variance_type == "fixed-small":
            return _gather(self.posterior_log_variance_clipped, t, n, dt).expand_as(like)
        if self.variance_type == "fixed-large":
            return torch.log(_gather(self.large_variance, t, n, dt)).expand_as(like)
        if v is None:
            raise ValueError("learned-range needs the network's v output")
        frac = (v + 1.0) / 2.0
        max_log = _gather(self.log_betas, t, n, dt)
        min_log = _gather(self.posterior_log_variance_clipped, t, n, dt)
        return frac * max_log + (1.0 - frac) * min_log

    def p_mean_variance(
        self,
        out: torch.Tensor,
        xt: torch.Tensor,
        t: torch.Tensor,
        *,
        clip_denoised: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Mean and log variance of p(x_{t-1} | x_t) from a raw network output.

        Without clipping the mean equals the paper's eq. 15 with the corrected coefficient,
        (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t); with ``clip_denoised`` the
        predicted x_0 is clamped to [-1, 1] before the posterior mean.
        """
        eps, v = self.split_output(out, xt.shape[1])
        x0 = self.predict_x0(xt, t, eps)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior(x0, xt, t)
        return {"mean": mean, "log_variance": self.model_log_variance(v, t, xt), "pred_x0": x0, "eps": eps}

    # -- losses ------------------------------------------------------------------------

    def vlb_terms(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """L_vlb(t) per sample in bits/dim: KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for t > 0,
        the decoder's discretised-Gaussian NLL of x_0 for t = 0.

        Detach the eps half of ``out`` before calling when the VLB is to train only the variance.
        """
        true_mean, _, true_logvar = self.q_posterior(x0, xt, t)
        p = self.p_mean_variance(out, xt, t)
        kl = mean_flat(normal_kl(true_mean, true_logvar, p["mean"], p["log_variance"]))
        nll = -mean_flat(
            discretized_gaussian_log_likelihood(
                x0, p["mean"], 0.5 * p["log_variance"], bin_half_width=self.bin_half_width, cdf=self.cdf
            )
        )
        return torch.where(t == 0, nll, kl) / math.log(2.0)

    def losses_from_output(
        self, out: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> Losses:
        """The training loss of a network output ``out`` at (x_t, t), per sample."""
        eps, v = self.split_output(out, x0.shape[1])
        mse = mean_flat((noise - eps) ** 2)
        if self.loss_type == "mse":
            return Losses(loss=mse, mse=mse, vlb=None)
        # The mean is detached inside L_vlb: the VLB trains only the variance (Nichol & Dhariwal).
        frozen = torch.cat([eps.detach(), v], dim=1)
        vlb = self.vlb_terms(x0, xt, t, frozen)
        return Losses(loss=mse + self.vlb_weight * vlb, mse=mse, vlb=vlb)

    def training_losses(
        self, model_fn: ModelFn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> Losses:
        """Noise ``x0`` to step ``t`` of this chain, run the network, return the losses."""
        if noise is None:
            noise = torch.randn_like(x0)
        xt = self.q_sample(x0, t, noise)
        out = self.run_model(model_fn, xt, t)
        return self.losses_from_output(out.float(), x0, xt, t, noise)
