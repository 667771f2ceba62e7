"""DDPM baseline (Ho et al. 2020): eps-prediction U-Net, linear schedule, ancestral sampling.

Registered as ``ddpm``. Presets:

- ``paper``: the 256x256 model of Ho et al. (LSUN/CelebA-HQ): ch=128, ch_mult=(1,1,2,2,4,4),
  2 residual blocks per level, attention at 16x16, 32 groups, dropout 0 -- about 113.7 M
  parameters single-channel; T=1000, 1000-step ancestral sampling.
- ``quick``: 32x32, ch=16, ch_mult=(1,2,4), 1 residual block per level, attention at 16x16 and
  in the middle (8x8), 8 groups, batch 16, 800 steps at lr 1e-3 -- 0.65 M parameters,
  about 100 s on an idle 2-core CPU (0.12 s per step). It samples ancestrally on 50 respaced timesteps
  (quadratic spacing, denser near t=0) instead of 1000, so that 150 images take well under a
  minute; deterministic DDIM (eta=0) is available but, on so briefly trained a model,
  diverged to noise for a third of the seeds, where the ancestral chain's fresh noise
  corrected the errors (checked by eye on the pelvic phantom).

The diffusion (schedule, process with a fixed small variance and the eps-MSE loss, respacing,
samplers) is the shared toolkit :mod:`genbench.diffusion`, the same one MT-DDPM uses; so are
the sampler options: ``sampler`` = ``ancestral`` | ``ddim`` | ``dpm-solver++``, ``sample_steps``
(None: every training step), ``sample_spacing`` (``auto``, ``uniform``, ``quadratic``,
``logsnr``), ``ddim_eta``, ``clip_denoised`` (clip predicted x_0 to [-1, 1], as Ho et al.).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from baselines._unet import UNet
from genbench.diffusion import (
    DiffusionOptions,
    GaussianDiffusion,
    check_diffusion_options,
    reject_renamed,
    sample_with_options,
)
from genbench.diffusion.options import SampleOverrides
from genbench.generator_base import BaseConfig, BaseGenerator
from genbench.training import EMATarget, Engine, TrainingTask


def _f(role: str, default: Any, doc: str = "") -> Any:
    return field(default=default, metadata={"role": role, "doc": doc})


@dataclass
class DDPMConfig(BaseConfig, DiffusionOptions):
    ch: int = _f("architecture", 64, "base width")
    ch_mult: tuple[int, ...] = _f("architecture", (1, 2, 2), "width multiplier per level")
    num_res_blocks: int = _f("architecture", 2, "residual blocks per level")
    attn_resolutions: tuple[int, ...] = _f("architecture", (16,), "map sizes with self-attention")
    dropout: float = _f("training", 0.0, "dropout in the residual blocks")
    groups: int = _f("architecture", 32, "GroupNorm groups")
    grad_clip: float | None = _f("training", 1.0, "gradient-norm clip (None: off)")
    ema_start: int = _f("training", 0, "step from which the EMA averages (before: copies)")

    def __post_init__(self) -> None:
        self.ch_mult = tuple(self.ch_mult)
        self.attn_resolutions = tuple(self.attn_resolutions)
        check_diffusion_options("ddpm", self)


PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        resolution=32, ch=16, ch_mult=(1, 2, 4), num_res_blocks=1, attn_resolutions=(16,),
        groups=8, batch_size=16, steps=800, lr=1e-3, ema_decay=0.99, ema_start=100,
        checkpoint_every=200, sampler="ancestral", sample_steps=50, sample_spacing="quadratic",
        sample_batch_size=150,
    ),
    "paper": dict(
        resolution=256, ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
        attn_resolutions=(16,), groups=32, dropout=0.0, batch_size=64, steps=500_000, lr=2e-5,
        ema_decay=0.9999, checkpoint_every=5000, sampler="ancestral", sample_steps=None,
        sample_batch_size=16,
    ),
}


def _roles(role: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(DDPMConfig) if f.metadata.get("role") == role)


class DDPMTask(TrainingTask):
    def __init__(self, model: DDPM) -> None:
        self.model = model

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.model.unet}

    def build_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"unet": torch.optim.Adam(modules["unet"].parameters(), lr=self.model.config.lr)}

    def ema_targets(self) -> dict[str, EMATarget]:
        c = self.model.config
        return {"unet": EMATarget(self.model.unet_ema, c.ema_decay, c.ema_start)}

    def train_step(self, batch: torch.Tensor, step: int, engine: Engine) -> dict[str, float]:
        c = self.model.config
        opt = engine.optimizer("unet")
        opt.zero_grad(set_to_none=True)
        x0 = batch.to(engine.device)
        # global RNG: the engine reseeds every step
        t = torch.randint(0, self.model.diffusion.num_timesteps, (x0.shape[0],), device=x0.device)
        unet = engine.module("unet")

        def model_fn(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            with engine.autocast():
                return unet(x, timesteps)

        loss = self.model.diffusion.training_losses(model_fn, x0, t, torch.randn_like(x0)).loss.mean()
        engine.backward(loss)
        if c.grad_clip:
            engine.clip_grad_norm("unet", c.grad_clip)
        opt.step()
        return {"loss": loss.item()}


class DDPM(SampleOverrides, BaseGenerator):
    name = "ddpm"
    config_class = DDPMConfig
    presets = PRESETS
    resume_ignores = _roles("sampling")
    architecture_keys = _roles("architecture")

    config: DDPMConfig

    def build(self) -> None:
        c = self.config
        # Ho et al.: fixed small variance (betatilde) for sampling, eps-MSE for training.
        self.diffusion = GaussianDiffusion.from_schedule(
            c.noise_schedule, c.num_timesteps, variance_type="fixed-small", loss_type="mse"
        )
        self.unet = UNet(
            c.resolution, ch=c.ch, ch_mult=c.ch_mult, num_res_blocks=c.num_res_blocks,
            attn_resolutions=c.attn_resolutions, dropout=c.dropout, groups=c.groups,
        )
        self.unet_ema = UNet(
            c.resolution, ch=c.ch, ch_mult=c.ch_mult, num_res_blocks=c.num_res_blocks,
            attn_resolutions=c.attn_resolutions, dropout=c.dropout, groups=c.groups,
        )
        self.unet_ema.load_state_dict(self.unet.state_dict())
        self.unet_ema.requires_grad_(False)

    def networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def ema_networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet_ema}

    def make_task(self) -> TrainingTask:
        return DDPMTask(self)

    @torch.no_grad()
    def generate(
        self, n: int, generator: torch.Generator, *, sampler: str | None = None,
        steps: int | None = None, spacing: str | None = None,
    ) -> torch.Tensor:
        c = self.config
        return sample_with_options(
            self.diffusion, self.unet_ema, c, (n, 1, c.resolution, c.resolution),
            generator=generator, device=self.device, sampler=sampler, steps=steps, spacing=spacing,
        )


def create(preset: str = "quick", resolution: int | None = None, **overrides: Any) -> DDPM:
    """Entry point of ``ddpm``: ``create(preset="quick"|"paper", resolution=None, **overrides)``."""
    reject_renamed("ddpm", overrides)
    return DDPM.factory(preset, resolution, **overrides)  # type: ignore[return-value]


create.presets = PRESETS  # type: ignore[attr-defined]
