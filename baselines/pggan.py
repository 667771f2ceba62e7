"""Progressive GAN (Karras et al., ICLR 2018) for single-channel images.

The networks are built for the final resolution up front; a growth state ``(stage, alpha)``
selects how much of them is used. Stage 0 is 4x4; stage s works at ``4 * 2**s`` pixels. When a
stage is added, its new layers are faded in linearly: the output is
``(1 - alpha) * upsample(old path) + alpha * new path`` in G, mirrored in D. The schedule is
expressed in images shown, and the growth state is a pure function of that count, which the
checkpoint stores, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from baselines._gan_layers import (
    SQRT2,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
    downsample2x,
    gradient_penalty,
    upsample2x,
)
from genbench.generator_base import BaseConfig, BaseGenerator, role
from genbench.training import EMATarget, Engine, TrainingTask


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def num_stages(resolution: int) -> int:
    """Number of growth stages from 4x4 up to ``resolution`` (4 -> 1, 8 -> 2, ...)."""
    return int(math.log2(resolution)) - 1


def stage_channels(resolution: int, fmap_base: int, fmap_max: int, fmap_min: int = 1) -> int:
    """Feature maps at a given resolution: ``min(2 * fmap_base / res, fmap_max)`` as in the paper."""
    return max(min(2 * fmap_base // resolution, fmap_max), fmap_min)


def growth_state(images_shown: int, phase_images: int, stages: int) -> tuple[int, float]:
    """(stage, alpha) after ``images_shown`` images.

    Stage 0 (4x4) is trained for ``phase_images`` images; every later stage first fades in
    over ``phase_images`` images (alpha 0 -> 1) and is then stabilised for as many. After the
    last stage is faded in, training stays there with alpha = 1.
    """
    if phase_images <= 0:
        return stages - 1, 1.0
    if images_shown < phase_images or stages == 1:
        return 0, 1.0
    t = images_shown - phase_images
    stage = 1 + t // (2 * phase_images)
    if stage > stages - 1:
        return stages - 1, 1.0
    within = t - (stage - 1) * 2 * phase_images
    alpha = min(within / phase_images, 1.0)
    return int(stage), float(alpha)


class PGGenerator(nn.Module):
    def __init__(
        self, resolution: int, latent_dim: int, fmap_base: int, fmap_max: int, fmap_min: int = 1
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.latent_dim = latent_dim
        self.stages = num_stages(resolution)
        ch = [stage_channels(4 * 2**s, fmap_base, fmap_max, fmap_min) for s in range(self.stages)]
        self.channels = ch
        self.norm = PixelNorm()
        # The reference uses gain sqrt(2)/4 on the dense 4x4 layer so its output variance
        # matches a 4x4 conv's.
        self.dense = EqualizedLinear(latent_dim, ch[0] * 16, gain=SQRT2 / 4)
        self.conv0 = EqualizedConv2d(ch[0], ch[0], 3)
        self.blocks = nn.ModuleList([nn.Identity()])
        for s in range(1, self.stages):
            self.blocks.append(
                nn.ModuleList([EqualizedConv2d(ch[s - 1], ch[s], 3), EqualizedConv2d(ch[s], ch[s], 3)])
            )
        self.to_rgb = nn.ModuleList([EqualizedConv2d(c, 1, 1, gain=1.0) for c in ch])
        # The growth clock lives with the weights: checkpoints, the EMA copy and saved
        # weights all carry it, so sampling and resuming use the right stage and alpha.
        self.register_buffer("images_shown", torch.zeros((), dtype=torch.int64))

    def _block(self, s: int, h: torch.Tensor) -> torch.Tensor:
        if s == 0:
            h = self.dense(self.norm(h)).reshape(h.shape[0], self.channels[0], 4, 4)
            h = self.norm(_lrelu(h))
            return self.norm(_lrelu(self.conv0(h)))
        conv_a, conv_b = self.blocks[s]
        h = upsample2x(h)
        h = self.norm(_lrelu(conv_a(h)))
        return self.norm(_lrelu(conv_b(h)))

    def forward(self, z: torch.Tensor, stage: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Image at ``4 * 2**stage`` pixels (linear output; the sampler clamps to [-1, 1])."""
        stage = self.stages - 1 if stage is None else stage
        h = self._block(0, z)
        for s in range(1, stage):
            h = self._block(s, h)
        if stage == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[stage](self._block(stage, h))
        if alpha >= 1.0:
            return new
        old = upsample2x(self.to_rgb[stage - 1](h))
        return torch.lerp(old, new, alpha)


class PGDiscriminator(nn.Module):
    def __init__(
        self,
        resolution: int,
        fmap_base: int,
        fmap_max: int,
        fmap_min: int = 1,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.stages = num_stages(resolution)
        ch = [stage_channels(4 * 2**s, fmap_base, fmap_max, fmap_min) for s in range(self.stages)]
        self.channels = ch
        self.from_rgb = nn.ModuleList([EqualizedConv2d(1, c, 1) for c in ch])
        self.blocks = nn.ModuleList([nn.Identity()])
        for s in range(1, self.stages):
            self.blocks.append(
                nn.ModuleList([EqualizedConv2d(ch[s], ch[s], 3), EqualizedConv2d(ch[s], ch[s - 1], 3)])
            )
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv_final = EqualizedConv2d(ch[0] + 1, ch[0], 3)
        self.conv_4x4 = EqualizedConv2d(ch[0], ch[0], 4, padding=0)
        self.out = EqualizedLinear(ch[0], 1, gain=1.0)

    def _block(self, s: int, h: torch.Tensor) -> torch.Tensor:
        conv_a, conv_b = self.blocks[s]
        h = _lrelu(conv_a(h))
        h = _lrelu(conv_b(h))
        return downsample2x(h)

    def forward(self, x: torch.Tensor, stage: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Critic score (N,) for images at ``4 * 2**stage`` pixels."""
        stage = self.stages - 1 if stage is None else stage
        h = _lrelu(self.from_rgb[stage](x))
        if stage > 0:
            h = self._block(stage, h)
            if alpha < 1.0:
                old = _lrelu(self.from_rgb[stage - 1](downsample2x(x)))
                h = torch.lerp(old, h, alpha)
            for s in range(stage - 1, 0, -1):
                h = self._block(s, h)
        h = self.mbstd(h)
        h = _lrelu(self.conv_final(h))
        h = _lrelu(self.conv_4x4(h))
        return self.out(h.flatten(1)).squeeze(1)


def resize_to_stage(x: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
    """Real images as the critic should see them during a stage.

    Downsampled by box filter to the stage's resolution and, while fading in, blended with
    their once-more-downsampled-then-upsampled version, mirroring the generator's blend.
    """
    target = 4 * 2**stage
    factor = x.shape[-1] // target
    if factor > 1:
        x = F.avg_pool2d(x, factor)
    if stage > 0 and alpha < 1.0:
        x = torch.lerp(upsample2x(downsample2x(x)), x, alpha)
    return x


# --------------------------------------------------------------------------- the model


@dataclass
class PGGANConfig(BaseConfig):
    """PGGAN hyper-parameters (defaults: the paper's).

    ``phase_images``: real images shown per phase (the 4x4 phase, then fade-in and
    stabilisation of every later stage). 0 means "spread the phases over ``steps``": the
    number is computed once when the config is built (and stored in it), so that the last
    stage is faded in after (2S-1)/2S of the run (S stages) and then stabilised for the rest.
    """

    resolution: int = field(default=256, metadata=role("architecture"))
    batch_size: int = field(default=16, metadata=role("training"))
    steps: int = field(default=650_000, metadata=role("training"))
    lr: float = field(default=1e-3, metadata=role("training"))
    betas: tuple[float, float] = field(default=(0.0, 0.99), metadata=role("training"))
    ema_decay: float = field(default=0.999, metadata=role("training"))
    latent_dim: int = field(default=512, metadata=role("architecture"))
    fmap_base: int = field(default=8192, metadata=role("architecture"))
    fmap_max: int = field(default=512, metadata=role("architecture"))
    fmap_min: int = field(default=1, metadata=role("architecture"))
    mbstd_group: int = field(default=4, metadata=role("architecture"))
    phase_images: int = field(default=800_000, metadata=role("training"))
    n_critic: int = field(default=1, metadata=role("training"))
    gp_lambda: float = field(default=10.0, metadata=role("training"))
    drift: float = field(default=0.001, metadata=role("training"))

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.phase_images <= 0:
            stages = num_stages(self.resolution)
            phases = 2 * stages  # 4x4, (fade, stabilise) per later stage, one extra at the end
            self.phase_images = max(1, self.steps * self.batch_size * self.n_critic // phases)


def _ema_warmup(decay: float):
    # Early in training the averaged weights would mostly remember the random init; the
    # ramp (1+t)/(10+t) lets short runs' EMA follow the weights until ``decay`` takes over.
    def at(step: int) -> float:
        return min(decay, (1.0 + step) / (10.0 + step))

    return at


class PGGANTask(TrainingTask):
    # inactive stages' layers get no gradient until they are grown in
    find_unused_parameters = True

    def __init__(self, model: PGGAN) -> None:
        self.model = model
        self.cfg: PGGANConfig = model.config

    def modules(self) -> dict[str, nn.Module]:
        return {"g": self.model.g, "d": self.model.d}

    def build_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        return {
            k: torch.optim.Adam(modules[k].parameters(), lr=c.lr, betas=c.betas, eps=1e-8)
            for k in ("g", "d")
        }

    def ema_targets(self) -> dict[str, EMATarget]:
        return {"g": EMATarget(self.model.g_ema, decay=_ema_warmup(self.cfg.ema_decay))}

    def extra_state(self) -> dict[str, Any]:
        # Informational: the authoritative clock is g.images_shown (a checkpointed buffer).
        return {"images_shown": int(self.model.g.images_shown)}

    def train_step(self, batch: torch.Tensor, step: int, engine: Engine) -> dict[str, float]:
        c = self.cfg
        g, d = engine.module("g"), engine.module("d")
        g_raw, d_raw = engine.unwrap("g"), engine.unwrap("d")
        opt_g, opt_d = engine.optimizer("g"), engine.optimizer("d")
        per_batch = c.batch_size * engine.world_size
        single = engine.world_size == 1
        stage, alpha = growth_state(int(g_raw.images_shown), c.phase_images, g_raw.stages)
        n, dev = batch.shape[0], batch.device

        for i in range(c.n_critic):
            real_full = batch if i == 0 else engine.next_batch()
            real = resize_to_stage(real_full, stage, alpha)
            z = torch.randn(n, c.latent_dim, device=dev)
            with torch.no_grad():
                fake = g(z, stage, alpha)
            d_real = d(real, stage, alpha)
            d_fake = d(fake, stage, alpha)
            gp = gradient_penalty(d, real, fake, stage=stage, alpha=alpha)
            wdist = d_real.mean() - d_fake.mean()
            loss_d = -wdist + c.gp_lambda * gp + c.drift * d_real.pow(2).mean()
            opt_d.zero_grad(set_to_none=True)
            engine.backward(loss_d)
            opt_d.step()
            g_raw.images_shown += per_batch

        # Generator step. In a single process D's weight gradients are not needed here, so
        # skip computing them; under DDP the wrapper's hooks expect them, so leave D as is.
        if single:
            d_raw.requires_grad_(False)
        z = torch.randn(n, c.latent_dim, device=dev)
        loss_g = -d(g(z, stage, alpha), stage, alpha).mean()
        opt_g.zero_grad(set_to_none=True)
        engine.backward(loss_g)
        opt_g.step()
        if single:
            d_raw.requires_grad_(True)
        return {
            "loss_d": float(loss_d.detach()),
            "loss_g": float(loss_g.detach()),
            "wdist": float(wdist.detach()),
            "gp": float(gp.detach()),
            "stage": float(stage),
            "alpha": float(alpha),
        }


class PGGAN(BaseGenerator):
    name = "pggan"
    config_class = PGGANConfig
    # genbench.testing: tiny at 16 px, phases of one batch so that the short fits grow through
    # every stage and the interrupted fit stops inside a fade-in. Each growth step hands the
    # critic new layers and a harder problem, so its loss is only comparable within a stage:
    # fit_loss holds growth off.
    conformance: ClassVar[dict[str, Any]] = {
        "overrides": {"latent_dim": 16, "fmap_base": 64, "fmap_max": 16, "fmap_min": 8,
                      "batch_size": 8, "phase_images": 8, "checkpoint_every": 0},
        "loss_key": "loss_d", "loss_steps": 30, "loss_overrides": {"phase_images": 10**9},
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # Karras et al. 2018 at 256x256: 800k images per phase, 13 phases, minibatch 16.
        "paper": {
            "resolution": 256,
            "batch_size": 16,
            "steps": 13 * 800_000 // 16,
            "latent_dim": 512,
            "fmap_base": 8192,
            "fmap_max": 512,
            "phase_images": 800_000,
            "ema_decay": 0.999,
            "checkpoint_every": 5000,
        },
        # A few minutes on a 2-core CPU at 32x32; phases spread over the steps.
        "quick": {
            "resolution": 32,
            "batch_size": 32,
            "steps": 800,
            "lr": 0.0006,
            "latent_dim": 64,
            "fmap_base": 256,
            "fmap_max": 64,
            "fmap_min": 16,
            "phase_images": 0,
            "ema_decay": 0.95,
            "checkpoint_every": 400,
        },
    }

    config: PGGANConfig

    def build(self) -> None:
        c = self.config
        self.g = PGGenerator(c.resolution, c.latent_dim, c.fmap_base, c.fmap_max, c.fmap_min)
        self.d = PGDiscriminator(c.resolution, c.fmap_base, c.fmap_max, c.fmap_min, c.mbstd_group)
        self.g_ema = PGGenerator(c.resolution, c.latent_dim, c.fmap_base, c.fmap_max, c.fmap_min)
        self.g_ema.load_state_dict(self.g.state_dict())

    def networks(self) -> dict[str, nn.Module]:
        return {"g": self.g, "d": self.d}

    def ema_networks(self) -> dict[str, nn.Module]:
        return {"g": self.g_ema}

    def make_task(self) -> TrainingTask:
        return PGGANTask(self)

    def growth(self) -> tuple[int, float]:
        """Current (stage, alpha) of the averaged generator."""
        return growth_state(int(self.g_ema.images_shown), self.config.phase_images, self.g_ema.stages)

    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        stage, alpha = self.growth()
        img = self.g_ema(z, stage, alpha)
        # A run stopped before the last stage was grown gives coarser images, shown at the
        # configured size (nearest-neighbour, i.e. as blocks).
        factor = self.config.resolution // img.shape[-1]
        if factor > 1:
            img = F.interpolate(img, scale_factor=float(factor), mode="nearest")
        return img


create = PGGAN.factory
