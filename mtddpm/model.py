"""MT-DDPM as a genbench Generator (registered as ``mt-ddpm``).

Training: T = 4000 linear-schedule steps, hybrid loss ``MSE(eps) + gamma * L_vlb`` (gamma 0.01,
L_vlb trains only the learned-range variance), on the shared engine (``genbench.training``):
this module supplies the network, the optimizer, the EMA target and one step.

Sampling (``sampler``): ``ancestral`` (the paper's, on ``sampling_steps`` respaced steps),
``ddim`` (``eta``) or ``dpm-solver++`` (2M). ``spacing="auto"`` means evenly spaced steps for
ancestral and DDIM and log-SNR spacing for DPM-Solver++ (see :meth:`GaussianDiffusion.kept_timesteps`).

Presets:
- ``paper``: 256x256, the authors' public configuration (base 128, channel multipliers
  (1,1,2,2,4,4), Swin blocks at 64..8 px with heads (4,8,16,16) and windows (4,8,8,4)),
  T = 4000, 500 ancestral steps, AdamW lr 2e-5, weight decay 1e-4, batch 8.
- ``quick``: 32x32, a small network that trains in about two minutes on a 2-core CPU; it samples
  with ``sampling_steps=50`` ancestral steps (not 500) so that ~150 images take seconds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from genbench.errors import UsageError
from genbench.generator_base import BaseConfig, BaseGenerator
from genbench.training import EMATarget, Engine, TrainingTask
from mtddpm.diffusion import GaussianDiffusion, make_timestep_sampler
from mtddpm.network import MTDDPMNet, NetworkConfig
from mtddpm.samplers import SAMPLERS, run_sampler

NAME = "mt-ddpm"


@dataclass
class MTDDPMConfig(BaseConfig):
    # training loop (resolution, batch_size, steps, lr, ema_decay, checkpoint_every, log_every,
    # mixed_precision, device and sample_batch_size come from BaseConfig)
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    ema_start: int = 0
    # diffusion and loss
    num_timesteps: int = 4000
    noise_schedule: str = "linear"
    gamma: float = 0.01
    bin_half_width: float = 1.0 / 255.0
    cdf: str = "tanh"
    timestep_sampler: str = "uniform"  # or "second-moment" (importance sampling of t)
    # sampling
    sampler: str = "ancestral"
    sampling_steps: int = 500
    spacing: str = "auto"
    eta: float = 0.0
    clip_denoised: bool = True
    use_ema: bool = True
    # network
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    swin_levels: tuple[bool, ...] = (False, False, True, True)
    num_heads: tuple[int, ...] = (1, 1, 4, 4)
    window_size: tuple[int, ...] = (4, 4, 4, 4)
    conv_sections: int = 3
    swin_sections: int = 2
    mlp_ratio: float = 2.0
    norm_groups: int = 8
    variance_activation: str = "tanh"

    def __post_init__(self) -> None:
        for name in ("channel_mult", "swin_levels", "num_heads", "window_size"):
            setattr(self, name, tuple(getattr(self, name)))
        self.swin_levels = tuple(bool(s) for s in self.swin_levels)

    def network_config(self) -> NetworkConfig:
        return NetworkConfig(
            image_size=self.resolution, base_channels=self.base_channels,
            channel_mult=self.channel_mult, swin_levels=self.swin_levels, num_heads=self.num_heads,
            window_size=self.window_size, conv_sections=self.conv_sections,
            swin_sections=self.swin_sections, mlp_ratio=self.mlp_ratio, norm_groups=self.norm_groups,
            variance_activation=self.variance_activation,
        )

    def validate(self) -> None:
        r = self.resolution
        if not isinstance(r, int) or r < 16 or r > 256 or r & (r - 1):
            raise UsageError(f"{NAME}: resolution must be a power of two from 16 to 256, got {r!r}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"{NAME}: sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.spacing not in ("auto", "uniform", "quadratic", "logsnr"):
            raise UsageError(f"{NAME}: spacing must be auto, uniform, quadratic or logsnr")
        if not 1 <= self.sampling_steps <= self.num_timesteps:
            raise UsageError(f"{NAME}: sampling_steps must be in [1, num_timesteps={self.num_timesteps}]")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise UsageError(f"{NAME}: mixed_precision must be no, bf16 or fp16")
        if self.gamma < 0 or self.bin_half_width <= 0:
            raise UsageError(f"{NAME}: gamma must be >= 0 and bin_half_width > 0")
        try:
            self.network_config().validate()
            make_timestep_sampler(self.timestep_sampler, 2)
            GaussianDiffusion.from_schedule(self.noise_schedule, self.num_timesteps)
        except ValueError as exc:
            raise UsageError(f"{NAME}: {exc}") from None


PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        resolution=32, base_channels=16, channel_mult=(1, 2, 4), swin_levels=(False, False, True),
        num_heads=(1, 2, 4), window_size=(4, 4, 4), mlp_ratio=2.0, norm_groups=8,
        batch_size=16, steps=1000, lr=1e-3, ema_decay=0.995, ema_start=100, checkpoint_every=500,
        sampler="ancestral", sampling_steps=50, sample_batch_size=160,
    ),
    "paper": dict(
        resolution=256, base_channels=128, channel_mult=(1, 1, 2, 2, 4, 4),
        swin_levels=(False, False, True, True, True, True), num_heads=(4, 4, 4, 8, 16, 16),
        window_size=(4, 4, 4, 8, 8, 4), mlp_ratio=4.0, norm_groups=32,
        batch_size=8, steps=300_000, lr=2e-5, weight_decay=1e-4, ema_decay=0.9999,
        checkpoint_every=5000, sampler="ancestral", sampling_steps=500, sample_batch_size=8,
    ),
}


class MTDDPMTask(TrainingTask):
    def __init__(self, model: MTDDPM) -> None:
        self.model = model
        c = model.config
        self.ts_sampler = make_timestep_sampler(c.timestep_sampler, c.num_timesteps)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.model.net}

    def build_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        c = self.model.config
        return {"net": torch.optim.AdamW(modules["net"].parameters(), lr=c.lr, weight_decay=c.weight_decay)}

    def ema_targets(self) -> dict[str, EMATarget]:
        c = self.model.config
        return {"net": EMATarget(self.model.net_ema, c.ema_decay, c.ema_start)}

    def train_step(self, batch: torch.Tensor, step: int, engine: Engine) -> dict[str, float]:
        c, diffusion = self.model.config, self.model.diffusion
        x0 = batch.to(engine.device)
        t, weights = self.ts_sampler.sample(x0.shape[0])  # global RNG: the engine reseeds per step
        t, weights = t.to(engine.device), weights.to(engine.device)
        noise = torch.randn_like(x0)
        xt = diffusion.q_sample(x0, t, noise)
        opt = engine.optimizer("net")
        opt.zero_grad(set_to_none=True)
        with engine.autocast():
            eps, v = engine.module("net")(xt, t)
        terms = diffusion.hybrid_loss(
            x0, t, noise, (eps.float(), v.float()), xt,
            gamma=c.gamma, bin_half_width=c.bin_half_width, cdf=c.cdf,
        )
        loss = (terms.loss * weights).mean()
        engine.backward(loss)
        if c.grad_clip:
            engine.clip_grad_norm("net", c.grad_clip)
        opt.step()
        self.ts_sampler.update(t.cpu(), terms.loss.detach().cpu())
        return {"loss": loss.item(), "mse": terms.mse.mean().item(), "vlb": terms.vlb.mean().item()}

    def extra_state(self) -> dict[str, Any]:
        return {"timestep_sampler": self.ts_sampler.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ts_sampler.load_state_dict(state.get("timestep_sampler", {}))


class MTDDPM(BaseGenerator):
    """The Swin-transformer DDPM with learned variance (Pan et al. 2023).

    Construction, fit, save/load and parameter counts come from :class:`BaseGenerator`;
    this class adds the network, the diffusion and the samplers.
    """

    name: ClassVar[str] = NAME
    config_class: ClassVar[type[BaseConfig]] = MTDDPMConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    # Sampling options do not change what is trained: a resumed run may change them
    # (steps, checkpoint_every, log_every, device and sample_batch_size are always ignored).
    resume_ignores = ("sampler", "sampling_steps", "spacing", "eta", "clip_denoised", "use_ema")
    # Checked on load, besides resolution.
    architecture_keys = (
        "base_channels", "channel_mult", "swin_levels", "num_heads", "window_size",
        "conv_sections", "swin_sections", "mlp_ratio", "norm_groups", "variance_activation",
    )

    config: MTDDPMConfig

    @classmethod
    def check_config(cls, config: BaseConfig) -> None:
        if not isinstance(config, MTDDPMConfig):
            raise UsageError(f"{NAME}: config must be an MTDDPMConfig, got {type(config).__name__}")
        config.validate()

    def build(self) -> None:
        c = self.config
        self.diffusion = GaussianDiffusion.from_schedule(c.noise_schedule, c.num_timesteps)
        self.net = MTDDPMNet(c.network_config())
        self.net_ema = copy.deepcopy(self.net).requires_grad_(False)

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def ema_networks(self) -> dict[str, nn.Module]:
        return {"net": self.net_ema}

    def make_task(self) -> TrainingTask:
        return MTDDPMTask(self)

    # -- sampling --------------------------------------------------------------------------

    def sampling_chain(self, steps: int | None = None, sampler: str | None = None, spacing: str | None = None):
        c = self.config
        sampler = sampler or c.sampler
        spacing = spacing or c.spacing
        if spacing == "auto":
            spacing = "logsnr" if sampler == "dpm-solver++" else "uniform"
        return self.diffusion.respace(int(steps or c.sampling_steps), spacing=spacing)

    @torch.no_grad()
    def generate(
        self, n: int, generator: torch.Generator, *, sampler: str | None = None,
        steps: int | None = None, spacing: str | None = None,
    ) -> torch.Tensor:
        """``n`` samples on ``self.device``; all noise drawn from the CPU ``generator``."""
        c = self.config
        sampler = sampler or c.sampler
        net = self.net_ema if c.use_ema else self.net
        net.eval()
        r = c.resolution
        return run_sampler(
            sampler, net, self.sampling_chain(steps, sampler, spacing), (n, 1, r, r), eta=c.eta,
            generator=generator, device=self.device, clip_denoised=c.clip_denoised,
        )

    def sample(
        self, n: int, *, seed: int = 0, batch_size: int | None = None, sampler: str | None = None,
        steps: int | None = None, spacing: str | None = None,
    ) -> torch.Tensor:
        """``n`` images (N, 1, R, R) float32 in [-1, 1] on the CPU; same seed, same images.

        ``sampler``, ``steps`` and ``spacing`` override the configured sampler for this call only.
        """
        return self._sample_batches(
            n, seed=seed, batch_size=batch_size, sampler=sampler, steps=steps, spacing=spacing
        )


def create(preset: str = "quick", resolution: int | None = None, **overrides: Any) -> MTDDPM:
    """Entry point of ``mt-ddpm``: ``create(preset="quick"|"paper", resolution=None, **overrides)``."""
    return MTDDPM.factory(preset, resolution, **overrides)
