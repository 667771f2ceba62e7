"""MT-DDPM as a genbench Generator (registered as ``mt-ddpm``).

The network is the authors' ``SwinVITModel`` (:mod:`mtddpm.network`); the diffusion is the
shared toolkit (:mod:`genbench.diffusion`) with a learned-range variance and the hybrid loss
``MSE(eps) + w * L_vlb`` (L_vlb trains only the variance); the training loop is the shared
engine (:mod:`genbench.training`).

Two named diffusion settings (``diffusion=``), because the paper's text and the authors' public
code disagree (``shared/reference/mtddpm-authors-config.md`` sections 3-4):

============================  ===============================  =================================
                              ``paper`` (the article's text)   ``authors`` (their notebook)
============================  ===============================  =================================
training steps T              4000                             1000
chain trained on              all T steps                      the 50-step respaced chain
sampling chain                500 steps respaced from T        the same 50-step chain
L_vlb weight                  gamma = 0.01                     steps of the chain / 1000 = 0.05
network's time input          the step index t                 original index x 1000/T
============================  ===============================  =================================

Each of those five values is also its own option (``num_timesteps``, ``train_chain_steps``,
``sample_steps``, ``vlb_weight``, ``rescale_timesteps``); left at ``None`` it takes the named
setting's value when the config is built, so ``diffusion=authors sample_steps=25`` means the
authors' setting sampled on 25 of its 50 steps.

Samplers (shared option names with ``ddpm``): ``sampler`` = ``ancestral`` (the paper's, with
the learned variance), ``ddim`` (``ddim_eta``) or ``dpm-solver++`` (2M); ``sample_steps``,
``sample_spacing`` (``auto``: log-SNR for DPM-Solver++, else uniform).

Presets:
- ``paper``: 256x256, the authors' network (116,042,570 parameters), the ``paper`` diffusion
  setting (the configuration the article reports and the one a reader of it would cite),
  AdamW lr 2e-5, weight decay 1e-4, batch 8, no gradient clipping (as the authors).
- ``quick``: 32x32, the same block layout scaled down (plain res-blocks at 32 px, Swin
  res-blocks at 16 and 8 px), the ``authors`` diffusion setting (see the README for the
  measurement behind that choice and the step count), 2000 steps on a 2-core CPU.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from genbench.diffusion import (
    DiffusionOptions,
    GaussianDiffusion,
    check_diffusion_options,
    make_timestep_sampler,
    reject_renamed,
    respace,
    sample_with_options,
)
from genbench.diffusion.options import SampleOverrides
from genbench.diffusion.timesteps import TIMESTEP_SAMPLERS
from genbench.errors import UsageError
from genbench.generator_base import BaseConfig, BaseGenerator
from genbench.training import EMATarget, Engine, TrainingTask
from mtddpm.network import MTDDPMNet, NetworkConfig

NAME = "mt-ddpm"

# The values a named diffusion setting gives to the options left at None, in this order;
# "T" means num_timesteps and "chain" train_chain_steps (as resolved).
DIFFUSION_SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(
        num_timesteps=4000, train_chain_steps="T", sample_steps=500, vlb_weight=0.01,
        rescale_timesteps=False,
    ),
    "authors": dict(
        num_timesteps=1000, train_chain_steps=50, sample_steps="chain", vlb_weight="rescaled",
        rescale_timesteps=True,
    ),
}
DEFAULT_DIFFUSION = "paper"


def _f(role: str, default: Any, doc: str = "") -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"role": role, "doc": doc})
    return field(default=default, metadata={"role": role, "doc": doc})


@dataclass
class MTDDPMConfig(BaseConfig, DiffusionOptions):
    """MT-DDPM's options. ``None`` diffusion values are filled from the ``diffusion`` setting."""

    # -- diffusion (None: from the named setting) ------------------------------------------
    diffusion: str = _f("training", DEFAULT_DIFFUSION, "named diffusion setting: paper or authors")
    num_timesteps: int | None = _f("training", None, "training steps T (paper 4000, authors 1000)")
    train_chain_steps: int | None = _f(
        "training", None, "steps of the respaced chain trained on (paper T, authors 50)"
    )
    vlb_weight: float | str | None = _f(
        "training", None, "weight of L_vlb: a number (paper 0.01) or 'rescaled' = chain steps/1000 (authors)"
    )
    rescale_timesteps: bool | None = _f(
        "training", None, "feed the network index x 1000/T instead of the index (authors True)"
    )
    sample_steps: int | None = _f("sampling", None, "sampling chain steps (paper 500, authors 50)")
    bin_half_width: float = _f("training", 1.0 / 255.0, "decoder NLL bin half-width on [-1, 1]")
    cdf: str = _f("training", "tanh", "normal CDF in the decoder NLL: tanh (Ho et al.) or erf")
    timestep_sampler: str = _f("training", "uniform", "uniform or second-moment importance sampling of t")
    # -- optimisation ---------------------------------------------------------------------
    weight_decay: float = _f("training", 0.0, "AdamW weight decay")
    grad_clip: float | None = _f("training", 1.0, "gradient-norm clip (None: off)")
    ema_start: int = _f("training", 0, "step from which the EMA averages (before: copies)")
    # -- sampling -------------------------------------------------------------------------
    use_ema: bool = _f("sampling", True, "sample with the EMA weights")
    # -- network (defaults: the authors' notebook) ----------------------------------------
    base_channels: int = _f("architecture", 128, "width of level 0 (the authors' model_channels)")
    channel_mult: tuple[int, ...] = _f("architecture", (1, 1, 2, 2, 4, 4), "width multiplier per level")
    num_res_blocks: tuple[int, ...] = _f(
        "architecture", (2, 2, 1, 1, 1, 1), "encoder res-blocks per level (decoder: one more)"
    )
    attention_resolutions: tuple[int, ...] = _f(
        "architecture", (64, 32, 16, 8), "map sizes (px) whose res-blocks are Swin res-blocks"
    )
    num_heads: tuple[int, ...] = _f("architecture", (4, 4, 4, 8, 16, 16), "attention heads per level")
    window_size: tuple[int, ...] = _f("architecture", (4, 4, 4, 8, 8, 4), "attention window per level")
    mlp_ratio: float = _f("architecture", 4.0, "Swin MLP hidden width / channels")
    norm_groups: int = _f("architecture", 32, "GroupNorm groups")

    def __post_init__(self) -> None:
        for name in ("channel_mult", "num_res_blocks", "attention_resolutions", "num_heads", "window_size"):
            value = getattr(self, name)
            if isinstance(value, int):
                value = (value,) * len(self.channel_mult) if name == "num_res_blocks" else (value,)
            setattr(self, name, tuple(value))
        if self.diffusion not in DIFFUSION_SETTINGS:
            raise UsageError(
                f"{NAME}: diffusion must be one of {', '.join(DIFFUSION_SETTINGS)}, got {self.diffusion!r}"
            )
        # Filled here, once: dataclasses.replace(config, diffusion=...) keeps the old values.
        for key, value in DIFFUSION_SETTINGS[self.diffusion].items():
            if getattr(self, key) is None:
                value = {"T": self.num_timesteps, "chain": self.train_chain_steps}.get(value, value)
                setattr(self, key, value)

    def network_config(self) -> NetworkConfig:
        return NetworkConfig(
            image_size=self.resolution, base_channels=self.base_channels,
            channel_mult=self.channel_mult, num_res_blocks=self.num_res_blocks,
            attention_resolutions=self.attention_resolutions, num_heads=self.num_heads,
            window_size=self.window_size, mlp_ratio=self.mlp_ratio, norm_groups=self.norm_groups,
            learn_sigma=True,
        )

    def process(self) -> GaussianDiffusion:
        """The chain the network is trained on (all T steps, or the respaced chain)."""
        full = GaussianDiffusion.from_schedule(
            self.noise_schedule, self.num_timesteps, variance_type="learned-range",
            loss_type="hybrid", vlb_weight=self.vlb_weight, bin_half_width=self.bin_half_width,
            cdf=self.cdf, rescale_timesteps=bool(self.rescale_timesteps),
        )
        if self.train_chain_steps == self.num_timesteps:
            return full
        return respace(full, int(self.train_chain_steps))

    def validate(self) -> None:
        r = self.resolution
        if not isinstance(r, int) or r < 16 or r > 256 or r & (r - 1):
            raise UsageError(f"{NAME}: resolution must be a power of two from 16 to 256, got {r!r}")
        check_diffusion_options(NAME, self)
        if not isinstance(self.train_chain_steps, int) or not 2 <= self.train_chain_steps <= self.num_timesteps:
            raise UsageError(
                f"{NAME}: train_chain_steps must be an integer in [2, num_timesteps={self.num_timesteps}]"
            )
        if self.sample_steps is not None and self.sample_steps > self.train_chain_steps:
            raise UsageError(
                f"{NAME}: sample_steps={self.sample_steps} exceeds the {self.train_chain_steps}-step "
                "chain the network is trained on"
            )
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise UsageError(f"{NAME}: mixed_precision must be no, bf16 or fp16")
        if self.timestep_sampler not in TIMESTEP_SAMPLERS:
            raise UsageError(
                f"{NAME}: timestep_sampler must be one of {', '.join(TIMESTEP_SAMPLERS)}, got {self.timestep_sampler!r}"
            )
        try:
            self.network_config().validate()
            self.process()
        except ValueError as exc:
            raise UsageError(f"{NAME}: {exc}") from None


def _roles(role: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(MTDDPMConfig) if f.metadata.get("role") == role)


PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        resolution=32, diffusion="authors", base_channels=32, channel_mult=(1, 2, 2),
        num_res_blocks=(1, 1, 1), attention_resolutions=(16, 8), num_heads=(1, 2, 2),
        window_size=(4, 4, 4), norm_groups=8,
        batch_size=16, steps=2000, lr=1e-3, ema_decay=0.995, ema_start=100, checkpoint_every=500,
        sampler="ancestral", sample_batch_size=160,
    ),
    "paper": dict(
        resolution=256, diffusion="paper",
        batch_size=8, steps=300_000, lr=2e-5, weight_decay=1e-4, grad_clip=None, ema_decay=0.9999,
        checkpoint_every=5000, sampler="ancestral", sample_batch_size=8,
    ),
}


class MTDDPMTask(TrainingTask):
    def __init__(self, model: MTDDPM) -> None:
        self.model = model
        self.ts_sampler = make_timestep_sampler(model.config.timestep_sampler, model.diffusion.num_timesteps)

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
        net = engine.module("net")

        def model_fn(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            with engine.autocast():
                return net(x, timesteps)

        opt = engine.optimizer("net")
        opt.zero_grad(set_to_none=True)
        terms = diffusion.training_losses(model_fn, x0, t, torch.randn_like(x0))
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


class MTDDPM(SampleOverrides, BaseGenerator):
    """The Swin-transformer DDPM with learned variance (Pan et al. 2023)."""

    name: ClassVar[str] = NAME
    config_class: ClassVar[type[BaseConfig]] = MTDDPMConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    # Sampling options do not change what is trained: a resumed run may change them.
    resume_ignores = _roles("sampling")
    # Checked on load, besides resolution.
    architecture_keys = _roles("architecture")

    config: MTDDPMConfig

    @classmethod
    def check_config(cls, config: BaseConfig) -> None:
        if not isinstance(config, MTDDPMConfig):
            raise UsageError(f"{NAME}: config must be an MTDDPMConfig, got {type(config).__name__}")
        config.validate()

    def build(self) -> None:
        c = self.config
        self.diffusion = c.process()
        self.net = MTDDPMNet(c.network_config())
        self.net_ema = copy.deepcopy(self.net).requires_grad_(False)

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def ema_networks(self) -> dict[str, nn.Module]:
        return {"net": self.net_ema}

    def make_task(self) -> TrainingTask:
        return MTDDPMTask(self)

    @torch.no_grad()
    def generate(
        self, n: int, generator: torch.Generator, *, sampler: str | None = None,
        steps: int | None = None, spacing: str | None = None,
    ) -> torch.Tensor:
        """``n`` samples on ``self.device``; all noise drawn from the CPU ``generator``."""
        c = self.config
        net = self.net_ema if c.use_ema else self.net
        net.eval()
        r = c.resolution
        return sample_with_options(
            self.diffusion, net, c, (n, 1, r, r), generator=generator, device=self.device,
            sampler=sampler, steps=steps, spacing=spacing,
        )


def create(preset: str = "quick", resolution: int | None = None, **overrides: Any) -> MTDDPM:
    """Entry point of ``mt-ddpm``: ``create(preset="quick"|"paper", resolution=None, **overrides)``."""
    reject_renamed(NAME, overrides)
    return MTDDPM.factory(preset, resolution, **overrides)


create.presets = PRESETS  # type: ignore[attr-defined]
