"""Noise schedules: the betas of the forward process, in float64.

With T = 4000 the smallest linear betas are 2.5e-5 and ``1 - abar`` near t = 0 loses digits in
float32, so schedules are float64 and only cast to the working dtype when gathered.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("linear", "cosine")


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al.'s linear schedule, scaled by 1000/T so that any T spans the same total noise
    as T = 1000 (improved-diffusion's ``linear``; at T = 1000 these are Ho et al.'s values)."""
    scale = 1000.0 / num_timesteps
    if scale * beta_end >= 1.0:
        raise ValueError(
            f"the scaled linear schedule needs T > {int(1000 * beta_end)} (its last beta would be "
            f"{scale * beta_end:.2f}); use the cosine schedule for very short chains"
        )
    return np.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=np.float64)


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
    raise ValueError(f"unknown noise schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
