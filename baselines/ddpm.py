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

Sampler options: ``sampler`` = ``"ancestral"`` (with ``sample_steps`` < T: respaced betas) or
``"ddim"`` (``sample_steps``, ``ddim_eta``); ``clip_denoised`` clips predicted x_0 to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from baselines._diffusion import SPACINGS, GaussianDiffusion, linear_betas
from baselines._unet import UNet
from genbench.errors import UsageError
from genbench.generator_base import BaseConfig, BaseGenerator
from genbench.training import EMATarget, Engine, TrainingTask


@dataclass
class DDPMConfig(BaseConfig):
    ch: int = 64
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    groups: int = 32
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sampler: str = "ancestral"  # "ancestral" | "ddim"
    sample_steps: int | None = None  # None: T for ancestral, 50 for DDIM
    sample_spacing: str = "uniform"  # "uniform" | "quadratic" timesteps when sample_steps < T
    ddim_eta: float = 0.0
    clip_denoised: bool = True
    grad_clip: float | None = 1.0
    ema_start: int = 0

    def __post_init__(self) -> None:
        self.ch_mult = tuple(self.ch_mult)
        self.attn_resolutions = tuple(self.attn_resolutions)
        if self.sampler not in ("ancestral", "ddim"):
            raise UsageError(f"ddpm: sampler must be 'ancestral' or 'ddim', got {self.sampler!r}")
        if self.sample_spacing not in SPACINGS:
            raise UsageError(
                f"ddpm: sample_spacing must be one of {', '.join(SPACINGS)}, got {self.sample_spacing!r}"
            )


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
        loss = self.model.diffusion.training_loss(engine.module("unet"), batch)
        engine.backward(loss)
        if c.grad_clip:
            engine.clip_grad_norm("unet", c.grad_clip)
        opt.step()
        return {"loss": loss.item()}


class DDPM(BaseGenerator):
    name = "ddpm"
    config_class = DDPMConfig
    presets = PRESETS
    resume_ignores = ("sampler", "sample_steps", "sample_spacing", "ddim_eta", "clip_denoised")
    architecture_keys = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "groups")

    config: DDPMConfig

    def build(self) -> None:
        c = self.config
        self.diffusion = GaussianDiffusion(linear_betas(c.timesteps, c.beta_start, c.beta_end))
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

    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        shape = (n, 1, c.resolution, c.resolution)
        net = self.unet_ema
        if c.sampler == "ddim":
            return self.diffusion.sample_ddim(
                net, shape, generator, device=self.device, steps=c.sample_steps or 50,
                spacing=c.sample_spacing, eta=c.ddim_eta, clip_denoised=c.clip_denoised,
            )
        return self.diffusion.sample_ancestral(
            net, shape, generator, device=self.device, steps=c.sample_steps,
            spacing=c.sample_spacing, clip_denoised=c.clip_denoised,
        )


create = DDPM.factory
