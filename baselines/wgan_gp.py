"""WGAN-GP baseline (Gulrajani et al. 2017): ResNet generator and critic, gradient penalty.

Registered as ``wgan-gp``. One engine step is one generator update preceded by ``n_critic``
(default 5) critic updates, each on a fresh real batch. Losses: critic
``E[D(fake)] - E[D(real)] + lambda * E[(||grad D(x_hat)|| - 1)^2]`` with ``x_hat`` uniform on
segments between real and fake samples (lambda = 10); generator ``-E[D(fake)]``. Both networks
use Adam(lr=1e-4, betas=(0, 0.9)). The critic normalises with layer norm (GroupNorm with one
group: per-sample statistics over C, H, W, per-channel affine) and never batch norm, which
would make the penalty's per-sample gradients depend on the rest of the batch; the generator
uses batch norm as in the paper.

Channel widths: at feature resolution r the width is ``min(ch_max, ch * R / r)`` for the image
resolution R, from 4x4 up to R.

Presets: ``quick`` (32x32, ch=16, ch_max=64, z=64, batch 16, 200 steps = 1000 critic updates,
lr 2e-4 -- doubled from the paper's 1e-4 because the CPU budget allows only 200 generator
steps; 0.26 M parameters in G and D together, about 106 s on an idle 2-core CPU) and ``paper``
(256x256, ch=64, ch_max=512, z=128, lr 1e-4: 33.3 M parameters, G 18.5 M + D 14.8 M; WGAN-GP was
published up to 128x128 -- this extends its 64x64 ResNet by two resolution levels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genbench.generator_base import BaseConfig, BaseGenerator, role
from genbench.training import Engine, TrainingTask


def _width(ch: int, ch_max: int, resolution: int, r: int) -> int:
    return min(ch_max, ch * (resolution // r))


class GBlock(nn.Module):
    """Pre-activation residual block with nearest-neighbour 2x upsampling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return self.skip(F.interpolate(x, scale_factor=2.0, mode="nearest")) + h


class DBlock(nn.Module):
    """Pre-activation residual block with layer norm and 2x mean-pool downsampling."""

    def __init__(self, cin: int, cout: int, first: bool = False) -> None:
        super().__init__()
        self.first = first
        self.norm1 = nn.Identity() if first else nn.GroupNorm(1, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(1, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(self.norm1(x))
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        return F.avg_pool2d(self.skip(x) + h, 2)


class ResNetGenerator(nn.Module):
    def __init__(self, resolution: int, z_dim: int, ch: int, ch_max: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        c4 = _width(ch, ch_max, resolution, 4)
        self.c4 = c4
        self.fc = nn.Linear(z_dim, 4 * 4 * c4)
        blocks, r, cur = [], 4, c4
        while r < resolution:
            nxt = _width(ch, ch_max, resolution, 2 * r)
            blocks.append(GBlock(cur, nxt))
            cur, r = nxt, 2 * r
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cur)
        self.out = nn.Conv2d(cur, 1, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.c4, 4, 4)
        return torch.tanh(self.out(F.relu(self.bn(self.blocks(h)))))


class ResNetCritic(nn.Module):
    def __init__(self, resolution: int, ch: int, ch_max: int) -> None:
        super().__init__()
        blocks, r, cur = [], resolution, 1
        while r > 4:
            nxt = _width(ch, ch_max, resolution, r)
            blocks.append(DBlock(cur, nxt, first=not blocks))
            cur, r = nxt, r // 2
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.GroupNorm(1, cur)
        self.fc = nn.Linear(cur * 4 * 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm(self.blocks(x)))
        return self.fc(h.flatten(1)).squeeze(1)


def penalty_from_outputs(
    out: torch.Tensor, points: torch.Tensor, lam: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam * mean((||d out_i / d points_i|| - 1)^2)`` and the per-sample gradient norms.

    Each output must depend only on its own sample (true for a critic without batch norm),
    so the gradient of ``out.sum()`` holds every sample's own gradient.
    """
    (grad,) = torch.autograd.grad(out.sum(), points, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)
    return lam * ((norms - 1.0) ** 2).mean(), norms


def gradient_penalty(
    critic: nn.Module | Any,
    real: torch.Tensor,
    fake: torch.Tensor,
    u: torch.Tensor,
    lam: float = 10.0,
) -> torch.Tensor:
    """The WGAN-GP penalty at ``x_hat = u * real + (1 - u) * fake`` (``u``: (B, 1, 1, 1))."""
    x_hat = (u * real + (1.0 - u) * fake.detach()).requires_grad_(True)
    return penalty_from_outputs(critic(x_hat), x_hat, lam)[0]


@dataclass
class WGANGPConfig(BaseConfig):
    z_dim: int = field(default=128, metadata=role("architecture"))
    ch: int = field(default=32, metadata=role("architecture"))
    ch_max: int = field(default=128, metadata=role("architecture"))
    n_critic: int = field(default=5, metadata=role("training"))
    gp_lambda: float = field(default=10.0, metadata=role("training"))
    lr: float = field(default=1e-4, metadata=role("training"))
    beta1: float = field(default=0.0, metadata=role("training"))
    beta2: float = field(default=0.9, metadata=role("training"))


PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(resolution=32, z_dim=64, ch=16, ch_max=64, batch_size=16, steps=200,
                  checkpoint_every=100, lr=2e-4, sample_batch_size=150),
    "paper": dict(resolution=256, z_dim=128, ch=64, ch_max=512, batch_size=64, steps=100_000,
                  checkpoint_every=2000, lr=1e-4, sample_batch_size=64),
}


class WGANGPTask(TrainingTask):
    def __init__(self, model: WGANGP) -> None:
        self.model = model

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.model.G, "D": self.model.D}

    def build_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        c = self.model.config
        betas = (c.beta1, c.beta2)
        return {
            "G": torch.optim.Adam(modules["G"].parameters(), lr=c.lr, betas=betas),
            "D": torch.optim.Adam(modules["D"].parameters(), lr=c.lr, betas=betas),
        }

    def train_step(self, batch: torch.Tensor, step: int, engine: Engine) -> dict[str, float]:
        c = self.model.config
        G, D = engine.module("G"), engine.module("D")
        opt_g, opt_d = engine.optimizer("G"), engine.optimizer("D")
        dev = engine.device
        for i in range(c.n_critic):
            real = batch if i == 0 else engine.next_batch()
            b = real.shape[0]
            with torch.no_grad():
                fake = G(torch.randn(b, c.z_dim, device=dev))
            u = torch.rand(b, 1, 1, 1, device=dev)
            x_hat = (u * real + (1.0 - u) * fake).requires_grad_(True)
            # One critic pass over real, fake and interpolates: DDP sees one forward per backward.
            out = D(torch.cat([real, fake, x_hat]))
            d_real, d_fake, d_hat = out.split(b)
            gp, _ = penalty_from_outputs(d_hat, x_hat, c.gp_lambda)
            wdist = d_real.mean() - d_fake.mean()
            d_loss = -wdist + gp
            opt_d.zero_grad(set_to_none=True)
            engine.backward(d_loss)
            opt_d.step()
        g_loss = -D(G(torch.randn(b, c.z_dim, device=dev))).mean()
        opt_g.zero_grad(set_to_none=True)
        engine.backward(g_loss)
        opt_g.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "gp": gp.item(),
                "wdist": wdist.item()}


class WGANGP(BaseGenerator):
    name = "wgan-gp"
    config_class = WGANGPConfig
    presets = PRESETS
    # genbench.testing: tiny networks, two critic updates per step, the critic's loss must fall.
    conformance: ClassVar[dict[str, Any]] = {
        "overrides": {"ch": 8, "ch_max": 16, "z_dim": 16, "batch_size": 8, "n_critic": 2},
        "loss_key": "d_loss", "loss_steps": 15,
    }

    config: WGANGPConfig

    def build(self) -> None:
        c = self.config
        self.G = ResNetGenerator(c.resolution, c.z_dim, c.ch, c.ch_max)
        self.D = ResNetCritic(c.resolution, c.ch, c.ch_max)

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def make_task(self) -> TrainingTask:
        return WGANGPTask(self)

    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.z_dim, generator=generator).to(self.device)
        return self.G(z)


create = WGANGP.factory
