"""Config options every diffusion model shares: one set of names for DDPM and MT-DDPM.

A model config inherits :class:`DiffusionOptions` (beside ``genbench.generator_base.BaseConfig``)
and gets the same user-facing keys: ``--set ddpm.sample_steps=100`` and
``--set mt-ddpm.sample_steps=100`` mean the same thing. Names used before the two models shared
this toolkit are rejected with a one-line hint (:func:`reject_renamed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from genbench.diffusion.process import GaussianDiffusion, ModelFn
from genbench.diffusion.respace import SPACINGS, respace
from genbench.diffusion.samplers import SAMPLERS, run_sampler
from genbench.diffusion.schedules import SCHEDULES
from genbench.errors import UsageError

# old name -> new name
RENAMED_OPTIONS: dict[str, str] = {
    "sampling_steps": "sample_steps",
    "spacing": "sample_spacing",
    "eta": "ddim_eta",
    "timesteps": "num_timesteps",
}


def _role(role: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"role": role, "doc": doc})


@dataclass
class DiffusionOptions:
    """The forward process's length and schedule, and how to sample."""

    num_timesteps: int = _role("training", 1000, "training steps T of the forward process")
    noise_schedule: str = _role("training", "linear", "beta schedule: linear (scaled by 1000/T) or cosine")
    sampler: str = _role("sampling", "ancestral", "ancestral, ddim or dpm-solver++")
    sample_steps: int | None = _role(
        "sampling", None, "steps of the sampling chain, respaced from the training chain (None: all)"
    )
    sample_spacing: str = _role(
        "sampling", "auto", "auto (logsnr for dpm-solver++, else uniform), uniform, quadratic or logsnr"
    )
    ddim_eta: float = _role("sampling", 0.0, "DDIM's eta (0: deterministic)")
    clip_denoised: bool = _role("sampling", True, "clamp the predicted x_0 to [-1, 1] at every step")


def reject_renamed(model: str, overrides: Mapping[str, Any]) -> None:
    """A one-line UsageError for an option name this toolkit replaced."""
    for old, new in RENAMED_OPTIONS.items():
        if old in overrides:
            raise UsageError(
                f"{model}: option {old!r} is now called {new!r} (ddpm and mt-ddpm share one set of "
                f"diffusion option names); use {new}={overrides[old]!r}"
            )


def check_diffusion_options(model: str, o: DiffusionOptions) -> None:
    if o.noise_schedule not in SCHEDULES:
        raise UsageError(f"{model}: noise_schedule must be one of {', '.join(SCHEDULES)}, got {o.noise_schedule!r}")
    if not isinstance(o.num_timesteps, int) or o.num_timesteps < 2:
        raise UsageError(f"{model}: num_timesteps must be an integer >= 2, got {o.num_timesteps!r}")
    if o.sampler not in SAMPLERS:
        raise UsageError(f"{model}: sampler must be one of {', '.join(SAMPLERS)}, got {o.sampler!r}")
    if o.sample_spacing not in ("auto", *SPACINGS):
        raise UsageError(
            f"{model}: sample_spacing must be auto, {', '.join(SPACINGS)}; got {o.sample_spacing!r}"
        )
    if o.sample_steps is not None and (not isinstance(o.sample_steps, int) or o.sample_steps < 1):
        raise UsageError(f"{model}: sample_steps must be a positive integer or null, got {o.sample_steps!r}")
    if not 0.0 <= float(o.ddim_eta) <= 1.0:
        raise UsageError(f"{model}: ddim_eta must be in [0, 1], got {o.ddim_eta!r}")


def sampling_chain(
    process: GaussianDiffusion, steps: int | None, sampler: str, spacing: str = "auto"
) -> GaussianDiffusion:
    """The chain to sample on: ``process`` (the training chain) respaced to ``steps``.

    ``spacing="auto"``: log-SNR spacing for DPM-Solver++ (it needs it at ~20 steps), evenly
    spaced otherwise.
    """
    if spacing == "auto":
        spacing = "logsnr" if sampler == "dpm-solver++" else "uniform"
    if steps is None or steps == process.num_timesteps:
        return process
    if not 1 <= steps <= process.num_timesteps:
        raise UsageError(
            f"sample_steps must be between 1 and the training chain's {process.num_timesteps} steps, got {steps}"
        )
    return respace(process, int(steps), spacing=spacing)


def sample_with_options(
    process: GaussianDiffusion,
    model_fn: ModelFn,
    options: DiffusionOptions,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator,
    device: torch.device,
    sampler: str | None = None,
    steps: int | None = None,
    spacing: str | None = None,
) -> torch.Tensor:
    """Sample with the configured sampler, or the one named for this call."""
    sampler = sampler or options.sampler
    chain = sampling_chain(
        process, steps if steps is not None else options.sample_steps, sampler, spacing or options.sample_spacing
    )
    return run_sampler(
        sampler, chain, model_fn, shape, eta=options.ddim_eta, generator=generator, device=device,
        clip_denoised=options.clip_denoised,
    )


class SampleOverrides:
    """``sample()`` of a diffusion generator (mixed in before ``BaseGenerator``): the configured
    sampler, or ``sampler``/``steps``/``spacing`` given for one call."""

    def sample(
        self, n: int, *, seed: int = 0, batch_size: int | None = None, sampler: str | None = None,
        steps: int | None = None, spacing: str | None = None,
    ) -> Any:
        """``n`` images (N, 1, R, R) float32 in [-1, 1] on the CPU; same seed, same images.

        ``sampler``, ``steps`` and ``spacing`` override the configured sampler for this call only.
        """
        # only the options given, so a subclass's plain generate(n, generator) keeps working
        options = {k: v for k, v in (("sampler", sampler), ("steps", steps), ("spacing", spacing)) if v is not None}
        return self._sample_batches(n, seed=seed, batch_size=batch_size, **options)  # type: ignore[attr-defined]
