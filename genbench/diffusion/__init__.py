"""The one diffusion toolkit: schedules, the Gaussian process (variance and loss types),
respacing, samplers and timestep samplers, for every diffusion model in genbench.

Used by ``baselines/ddpm.py`` (fixed small variance, eps-MSE) and ``mtddpm`` (learned-range
variance, hybrid loss); a third-party diffusion model can use it the same way.
"""

from genbench.diffusion.likelihood import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    exact_standard_normal_cdf,
    mean_flat,
    normal_kl,
)
from genbench.diffusion.options import (
    RENAMED_OPTIONS,
    DiffusionOptions,
    check_diffusion_options,
    reject_renamed,
    sample_with_options,
    sampling_chain,
)
from genbench.diffusion.process import (
    LOSS_TYPES,
    VARIANCE_TYPES,
    GaussianDiffusion,
    Losses,
    ModelFn,
)
from genbench.diffusion.respace import SPACINGS, kept_timesteps, respace, space_timesteps
from genbench.diffusion.samplers import (
    SAMPLERS,
    ancestral_sample,
    ddim_sample,
    dpm_solver_pp_2m_sample,
    run_sampler,
)
from genbench.diffusion.schedules import SCHEDULES, cosine_betas, linear_betas, make_betas
from genbench.diffusion.timesteps import (
    TIMESTEP_SAMPLERS,
    SecondMomentTimestepSampler,
    UniformTimestepSampler,
    make_timestep_sampler,
)

__all__ = [
    "LOSS_TYPES", "RENAMED_OPTIONS", "SAMPLERS", "SCHEDULES", "SPACINGS", "TIMESTEP_SAMPLERS",
    "VARIANCE_TYPES", "DiffusionOptions", "GaussianDiffusion", "Losses", "ModelFn",
    "SecondMomentTimestepSampler", "UniformTimestepSampler", "ancestral_sample",
    "approx_standard_normal_cdf", "check_diffusion_options", "cosine_betas", "ddim_sample",
    "discretized_gaussian_log_likelihood", "dpm_solver_pp_2m_sample", "exact_standard_normal_cdf",
    "kept_timesteps", "linear_betas", "make_betas", "make_timestep_sampler", "mean_flat",
    "normal_kl", "reject_renamed", "respace", "run_sampler", "sample_with_options",
    "sampling_chain", "space_timesteps",
]
