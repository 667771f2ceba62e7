"""Gaussian KL and the discretised-Gaussian likelihood of the decoder step (Ho et al. 2020)."""

from __future__ import annotations

import math

import torch


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


CDFS = {"tanh": approx_standard_normal_cdf, "erf": exact_standard_normal_cdf}


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
    if cdf not in CDFS:
        raise ValueError(f"cdf must be one of {', '.join(CDFS)}, got {cdf!r}")
    phi = CDFS[cdf]
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
    """Mean over all but the batch dimension."""
    return x.mean(dim=tuple(range(1, x.ndim)))
