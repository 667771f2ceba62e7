"""StyleGAN2-style generator (Karras et al., CVPR 2020) with ADA, for single-channel images.

Mapping network z -> w; synthesis from a learned 4x4 constant through modulated/demodulated
convolutions with per-layer noise, skip-connected 1-channel outputs; residual discriminator
with minibatch stddev. Trained with the non-saturating logistic loss, lazy R1 on reals, style
mixing, an EMA of G and grayscale-safe adaptive discriminator augmentation. Upsampling and
downsampling are bilinear/box filters rather than the reference FIR filters, and path-length
regularisation is left out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from baselines._gan_layers import (
    SQRT2,
    AdaConfig,
    AdaptiveAugment,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    ModulatedConv2d,
    NoiseInjection,
    PixelNorm,
    downsample2x,
    r1_penalty,
)
from genbench.generator_base import BaseConfig, BaseGenerator, role
from genbench.training import EMATarget, Engine, TrainingTask


def _act(x: torch.Tensor) -> torch.Tensor:
    # leaky ReLU rescaled by sqrt(2) keeps unit variance through layers with gain-1 weights
    return F.leaky_relu(x, 0.2) * SQRT2


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return max(min(channel_base // resolution, channel_max), 1)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, num_layers: int, lr_mul: float = 0.01) -> None:
        super().__init__()
        self.norm = PixelNorm()
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            [EqualizedLinear(a, b, gain=1.0, lr_mul=lr_mul) for a, b in itertools.pairwise(dims)]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(z)
        for layer in self.layers:
            x = _act(layer(x))
        return x


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias -> activation."""

    def __init__(self, cin: int, cout: int, w_dim: int, *, up: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim, demodulate=True, up=up)
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        x = self.noise(self.conv(x, w), noise)
        return _act(x + self.bias[None, :, None, None])


class ToGray(nn.Module):
    """Modulated 1x1 conv to one channel, not demodulated (its scale carries the image)."""

    def __init__(self, cin: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, 1, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class SynthesisNetwork(nn.Module):
    """w per layer (B, num_ws, w_dim) -> image. Layer k uses ``ws[:, k]``.

    Index layout: the 4x4 conv uses 0 and its output layer 1; the block at stage s >= 1 uses
    2s-1 (upsampling conv), 2s (conv) and 2s+1 (output layer), so ``num_ws = 2 * stages``.
    """

    def __init__(self, resolution: int, w_dim: int, channel_base: int, channel_max: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.stages = int(math.log2(resolution)) - 1
        ch = [channels_at(4 * 2**s, channel_base, channel_max) for s in range(self.stages)]
        self.channels = ch
        self.num_ws = 2 * self.stages
        self.const = nn.Parameter(torch.randn(ch[0], 4, 4))
        self.conv0 = StyledConv(ch[0], ch[0], w_dim)
        self.to_gray = nn.ModuleList([ToGray(c, w_dim) for c in ch])
        self.up_convs = nn.ModuleList([nn.Identity()])
        self.convs = nn.ModuleList([nn.Identity()])
        for s in range(1, self.stages):
            self.up_convs.append(StyledConv(ch[s - 1], ch[s], w_dim, up=True))
            self.convs.append(StyledConv(ch[s], ch[s], w_dim))

    def noise_shapes(self) -> list[tuple[int, int]]:
        """(index, side) of every noise input, in the order ``forward`` consumes them."""
        sides = [4]
        for s in range(1, self.stages):
            sides += [4 * 2**s, 4 * 2**s]
        return list(enumerate(sides))

    def make_noise(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> list[torch.Tensor]:
        """Noise maps for every layer, drawn on the CPU so a seed gives the same maps anywhere."""
        out = []
        for _, side in self.noise_shapes():
            n = torch.randn(batch, 1, side, side, generator=generator)
            out.append(n.to(device) if device is not None else n)
        return out

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        noise = noise if noise is not None else [None] * len(self.noise_shapes())
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        x = self.conv0(x, ws[:, 0], noise[0])
        img = self.to_gray[0](x, ws[:, 1])
        for s in range(1, self.stages):
            x = self.up_convs[s](x, ws[:, 2 * s - 1], noise[2 * s - 1])
            x = self.convs[s](x, ws[:, 2 * s], noise[2 * s])
            img = F.interpolate(img, scale_factor=2.0, mode="bilinear", align_corners=False)
            img = img + self.to_gray[s](x, ws[:, 2 * s + 1])
        return img


class StyleGenerator(nn.Module):
    def __init__(
        self,
        resolution: int,
        z_dim: int,
        w_dim: int,
        mapping_layers: int,
        channel_base: int,
        channel_max: int,
        mapping_lr_mul: float = 0.01,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul)
        self.synthesis = SynthesisNetwork(resolution, w_dim, channel_base, channel_max)
        self.num_ws = self.synthesis.num_ws

    def mix_styles(self, z1: torch.Tensor, z2: torch.Tensor, cutoff: int) -> torch.Tensor:
        """ws using w(z1) for layers < cutoff and w(z2) for layers >= cutoff (style mixing)."""
        w1 = self.mapping(z1)[:, None].expand(-1, self.num_ws, -1)
        w2 = self.mapping(z2)[:, None].expand(-1, self.num_ws, -1)
        layer = torch.arange(self.num_ws, device=z1.device)[None, :, None]
        return torch.where(layer < cutoff, w1, w2)

    def forward(
        self,
        z: torch.Tensor,
        noise: list[torch.Tensor] | None = None,
        *,
        z2: torch.Tensor | None = None,
        cutoff: int | None = None,
    ) -> torch.Tensor:
        if z2 is not None and cutoff is not None:
            ws = self.mix_styles(z, z2, cutoff)
        else:
            ws = self.mapping(z)[:, None].expand(-1, self.num_ws, -1)
        return self.synthesis(ws, noise)


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs then 2x box downsampling, plus a 1x1 skip; sum / sqrt 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_a = EqualizedConv2d(cin, cin, 3, gain=1.0)
        self.conv_b = EqualizedConv2d(cin, cout, 3, gain=1.0)
        self.skip = EqualizedConv2d(cin, cout, 1, bias=False, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(downsample2x(x))
        h = _act(self.conv_a(x))
        h = downsample2x(_act(self.conv_b(h)))
        return (skip + h) / SQRT2


class StyleDiscriminator(nn.Module):
    def __init__(
        self, resolution: int, channel_base: int, channel_max: int, mbstd_group: int = 4
    ) -> None:
        super().__init__()
        stages = int(math.log2(resolution)) - 1
        ch = [channels_at(4 * 2**s, channel_base, channel_max) for s in range(stages)]
        self.from_gray = EqualizedConv2d(1, ch[-1], 1, gain=1.0)
        self.blocks = nn.ModuleList([DiscriminatorBlock(ch[s], ch[s - 1]) for s in range(stages - 1, 0, -1)])
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv = EqualizedConv2d(ch[0] + 1, ch[0], 3, gain=1.0)
        self.fc = EqualizedLinear(ch[0] * 16, ch[0], gain=1.0)
        self.out = EqualizedLinear(ch[0], 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _act(self.from_gray(x))
        for block in self.blocks:
            h = block(h)
        h = _act(self.conv(self.mbstd(h)))
        h = _act(self.fc(h.flatten(1)))
        return self.out(h).squeeze(1)


# --------------------------------------------------------------------------- the model


@dataclass
class StyleGANConfig(BaseConfig):
    """StyleGAN2 + ADA hyper-parameters (defaults: the ADA paper's ``paper256`` setting).

    ``r1_gamma``/``r1_interval``: R1 weight and lazy interval (the penalty is applied every
    ``r1_interval`` steps, scaled by the interval, with Adam's lr/betas corrected by
    interval/(interval+1) as in the paper). ``ada_target``/``ada_speed_images``/
    ``ada_interval``: ADA's r_t target, images for p to cross [0, 1], steps between updates;
    ``ada=False`` turns augmentation off.
    """

    resolution: int = field(default=256, metadata=role("architecture"))
    batch_size: int = field(default=64, metadata=role("training"))
    steps: int = field(default=25_000_000 // 64, metadata=role("training"))
    lr: float = field(default=0.0025, metadata=role("training"))
    betas: tuple[float, float] = field(default=(0.0, 0.99), metadata=role("training"))
    ema_decay: float = field(default=0.998, metadata=role("training"))
    z_dim: int = field(default=512, metadata=role("architecture"))
    w_dim: int = field(default=512, metadata=role("architecture"))
    mapping_layers: int = field(default=8, metadata=role("architecture"))
    mapping_lr_mul: float = field(default=0.01, metadata=role("architecture"))
    channel_base: int = field(default=16384, metadata=role("architecture"))
    channel_max: int = field(default=512, metadata=role("architecture"))
    mbstd_group: int = field(default=8, metadata=role("architecture"))
    style_mixing_prob: float = field(default=0.9, metadata=role("training"))
    r1_gamma: float = field(default=1.0, metadata=role("training"))
    r1_interval: int = field(default=16, metadata=role("training"))
    ada: bool = field(default=True, metadata=role("training"))
    ada_target: float = field(default=0.6, metadata=role("training"))
    ada_speed_images: int = field(default=500_000, metadata=role("training"))
    ada_interval: int = field(default=4, metadata=role("training"))

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]

    def ada_config(self) -> AdaConfig:
        return AdaConfig(
            target=self.ada_target, speed_images=self.ada_speed_images, interval=self.ada_interval
        )


def _ema_warmup(decay: float):
    # short runs: let the average follow the weights at first instead of the random init
    def at(step: int) -> float:
        return min(decay, (1.0 + step) / (10.0 + step))

    return at


class StyleGANTask(TrainingTask):
    def __init__(self, model: StyleGAN) -> None:
        self.model = model
        self.cfg: StyleGANConfig = model.config
        self.ada = AdaptiveAugment(self.cfg.ada_config())
        self._last_r1 = 0.0  # R1 runs every r1_interval steps; logs show the latest value

    def modules(self) -> dict[str, nn.Module]:
        return {"g": self.model.g, "d": self.model.d}

    def build_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        # Lazy regularisation changes D's effective step count; compensate as in the paper.
        ratio = c.r1_interval / (c.r1_interval + 1) if c.r1_gamma > 0 else 1.0
        d_betas = (c.betas[0] ** ratio, c.betas[1] ** ratio)
        return {
            "g": torch.optim.Adam(modules["g"].parameters(), lr=c.lr, betas=c.betas, eps=1e-8),
            "d": torch.optim.Adam(modules["d"].parameters(), lr=c.lr * ratio, betas=d_betas, eps=1e-8),
        }

    def ema_targets(self) -> dict[str, EMATarget]:
        return {"g": EMATarget(self.model.g_ema, decay=_ema_warmup(self.cfg.ema_decay))}

    def extra_state(self) -> dict[str, Any]:
        return {"ada": self.ada.state_dict(), "last_r1": self._last_r1}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "ada" in state:
            self.ada.load_state_dict(state["ada"])
        self._last_r1 = float(state.get("last_r1", 0.0))

    def _latents(self, n: int, num_ws: int, device: torch.device) -> dict[str, Any]:
        """z (and, with probability ``style_mixing_prob``, a second z and a crossover layer)."""
        z = torch.randn(n, self.cfg.z_dim, device=device)
        if num_ws > 1 and float(torch.rand(())) < self.cfg.style_mixing_prob:
            cutoff = int(torch.randint(1, num_ws, ()))
            return {"z": z, "z2": torch.randn(n, self.cfg.z_dim, device=device), "cutoff": cutoff}
        return {"z": z}

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return self.ada(x) if self.cfg.ada else x

    def train_step(self, batch: torch.Tensor, step: int, engine: Engine) -> dict[str, float]:
        c = self.cfg
        g, d = engine.module("g"), engine.module("d")
        d_raw = engine.unwrap("d")
        num_ws = engine.unwrap("g").num_ws
        opt_g, opt_d = engine.optimizer("g"), engine.optimizer("d")
        n, dev = batch.shape[0], batch.device
        single = engine.world_size == 1

        # Discriminator: logistic loss, plus lazy R1 on (un-augmented) reals.
        do_r1 = c.r1_gamma > 0 and step % c.r1_interval == 0
        lat = self._latents(n, num_ws, dev)
        with torch.no_grad():
            fake = g(lat.pop("z"), **lat)
        real = batch.detach().requires_grad_(do_r1)
        d_real = d(self._augment(real))
        d_fake = d(self._augment(fake))
        loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        if do_r1:
            r1 = r1_penalty(d_real, real)
            loss_d = loss_d + (c.r1_gamma / 2) * r1 * c.r1_interval
            self._last_r1 = float(r1.detach())
        opt_d.zero_grad(set_to_none=True)
        engine.backward(loss_d)
        opt_d.step()
        if c.ada:
            self.ada.accumulate(d_real)

        # Generator: non-saturating loss through the same augmentation.
        if single:
            d_raw.requires_grad_(False)
        lat = self._latents(n, num_ws, dev)
        fake = g(lat.pop("z"), **lat)
        loss_g = F.softplus(-d(self._augment(fake))).mean()
        opt_g.zero_grad(set_to_none=True)
        engine.backward(loss_g)
        opt_g.step()
        if single:
            d_raw.requires_grad_(True)

        if c.ada:
            self.ada.step(n * engine.world_size, reduce=_sum_reducer(engine))
        return {
            "loss_d": float(loss_d.detach()),
            "loss_g": float(loss_g.detach()),
            "r1": self._last_r1,
            "d_real": float(d_real.detach().mean()),
            "ada_p": self.ada.p,
        }


def _sum_reducer(engine: Engine):
    """Sum a pair of numbers over processes so every rank steers p identically."""
    if engine.world_size == 1:
        return None

    def reduce(values: tuple[float, float]) -> tuple[float, float]:
        t = torch.tensor(values, device=engine.device, dtype=torch.float64)
        t = engine.accelerator.reduce(t, reduction="sum")
        return float(t[0]), float(t[1])

    return reduce


class StyleGAN(BaseGenerator):
    name = "stylegan"
    config_class = StyleGANConfig
    # genbench.testing: tiny networks, lazy R1 every other step, ADA updated every step.
    conformance: ClassVar[dict[str, Any]] = {
        "overrides": {"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "channel_base": 128,
                      "channel_max": 16, "batch_size": 8, "checkpoint_every": 0, "r1_interval": 2,
                      "ada_speed_images": 64, "ada_interval": 1},
        "loss_key": "loss_d", "loss_steps": 30,
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # StyleGAN2-ADA "paper256" (Karras et al. 2020b): 25M images at batch 64.
        "paper": {
            "resolution": 256,
            "batch_size": 64,
            "steps": 25_000_000 // 64,
            "z_dim": 512,
            "w_dim": 512,
            "mapping_layers": 8,
            "channel_base": 16384,
            "channel_max": 512,
            "mbstd_group": 8,
            "r1_gamma": 1.0,
            "ema_decay": 0.998,
            "ada_speed_images": 500_000,
            "checkpoint_every": 5000,
        },
        # A few minutes on a 2-core CPU at 32x32.
        "quick": {
            "resolution": 32,
            "batch_size": 32,
            "steps": 500,
            "lr": 0.0025,
            "z_dim": 64,
            "w_dim": 64,
            "mapping_layers": 2,
            "channel_base": 512,
            "channel_max": 64,
            "mbstd_group": 4,
            "r1_gamma": 0.1,
            "r1_interval": 16,
            "ema_decay": 0.99,
            "ada_speed_images": 20_000,
            "checkpoint_every": 250,
        },
    }

    config: StyleGANConfig

    def _generator(self) -> StyleGenerator:
        c = self.config
        return StyleGenerator(
            c.resolution, c.z_dim, c.w_dim, c.mapping_layers, c.channel_base, c.channel_max,
            c.mapping_lr_mul,
        )

    def build(self) -> None:
        c = self.config
        self.g = self._generator()
        self.d = StyleDiscriminator(c.resolution, c.channel_base, c.channel_max, c.mbstd_group)
        self.g_ema = self._generator()
        self.g_ema.load_state_dict(self.g.state_dict())

    def networks(self) -> dict[str, nn.Module]:
        return {"g": self.g, "d": self.d}

    def ema_networks(self) -> dict[str, nn.Module]:
        return {"g": self.g_ema}

    def make_task(self) -> TrainingTask:
        return StyleGANTask(self)

    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.z_dim, generator=generator).to(self.device)
        noise = self.g_ema.synthesis.make_noise(n, generator, self.device)
        return self.g_ema(z, noise)


create = StyleGAN.factory
