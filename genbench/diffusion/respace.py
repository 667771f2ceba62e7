"""Respacing: the same process restricted to a subset of its steps (Nichol & Dhariwal 2021).

A respaced chain is not a second implementation: it is a :class:`GaussianDiffusion` whose betas
are recomputed from the kept steps' ``abar`` (``beta_s = 1 - abar_s / abar_{s_prev}``), whose
``timestep_map`` sends its indices back to the original ones (so the network is fed the steps it
was trained on), and which keeps the parent's variance and loss types. Respacing a respaced
chain composes the maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from genbench.diffusion.process import GaussianDiffusion

SPACINGS = ("uniform", "quadratic", "logsnr")


def space_timesteps(num_timesteps: int, count: int | Sequence[int]) -> list[int]:
    """``count`` evenly spaced steps of ``range(num_timesteps)`` (first and last kept; the
    fractional stride (T-1)/(count-1) rounded, as improved-diffusion's ``space_timesteps``),
    or an explicit subset, checked and sorted."""
    if isinstance(count, (int, np.integer)):
        count = int(count)
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


def kept_timesteps(process: GaussianDiffusion, count: int, spacing: str = "uniform") -> list[int]:
    """Which ``count`` of ``process``'s steps to keep.

    ``uniform``: evenly spaced in t (the paper's 500 of 4000). ``quadratic``: evenly spaced in
    sqrt(t), denser near t = 0 (DDIM's choice for small images). ``logsnr``: evenly spaced in
    lambda = log(sqrt(abar) / sqrt(1 - abar)), what DPM-Solver needs to be accurate at ~20
    steps. Non-uniform spacings may keep a few fewer steps when two targets round to one index.
    """
    n = process.num_timesteps
    if not 1 <= count <= n:
        raise ValueError(f"cannot keep {count} of {n} timesteps")
    if spacing == "uniform":
        return space_timesteps(n, count)
    if count == 1:
        return [n - 1]
    if spacing == "quadratic":
        kept = np.round(np.linspace(0.0, math.sqrt(n - 1), count) ** 2).astype(np.int64)
        return space_timesteps(n, kept.tolist())
    if spacing == "logsnr":
        abar = process.alphas_cumprod.numpy()
        lam = 0.5 * (np.log(abar) - np.log1p(-abar))  # decreasing in t
        targets = np.linspace(lam[-1], lam[0], count)
        rev = lam[::-1]  # increasing
        idx = np.searchsorted(rev, targets).clip(1, n - 1)
        lo, hi = rev[idx - 1], rev[idx]
        pick = np.where(np.abs(targets - lo) <= np.abs(hi - targets), idx - 1, idx)
        return space_timesteps(n, (n - 1 - pick).tolist())
    raise ValueError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")


def respace(
    process: GaussianDiffusion, use_timesteps: int | Sequence[int], spacing: str = "uniform"
) -> GaussianDiffusion:
    """``process`` restricted to ``use_timesteps`` (a count spread by ``spacing``, or indices).

    The kept steps' abar equal the parent's, so a variance learned between beta_t and
    betatilde_t keeps its meaning on the shorter chain.
    """
    if isinstance(use_timesteps, (int, np.integer)):
        kept = kept_timesteps(process, int(use_timesteps), spacing)
    else:
        kept = space_timesteps(process.num_timesteps, use_timesteps)
    if kept == list(range(process.num_timesteps)):
        return process
    abar = process.alphas_cumprod.numpy()
    new_betas, last = [], 1.0
    for k in kept:
        new_betas.append(1.0 - abar[k] / last)
        last = abar[k]
    return GaussianDiffusion(
        np.array(new_betas),
        timestep_map=process.timestep_map.numpy()[kept],
        original_num_steps=process.original_num_steps,
        **process.options(),
    )
