"""The MT-DDPM network, block for block as the authors built it (``SwinVITModel``).

Source: the authors' public code (shaoyanpan/2D-Medical-Denoising-Diffusion-Probabilistic-Model-,
``network/Diffusion_model_transformer.py``); every block, skip and parameter count is listed in
``shared/reference/mtddpm-authors-config.md``. With the paper preset (256 px, base 128, channel
multipliers (1, 1, 2, 2, 4, 4)) it has exactly 116,042,570 parameters, as their notebook prints.

Layout, for levels l = 0..L-1 at map sizes R / 2^l:

- a stem 3x3 conv; then per level ``num_res_blocks[l]`` residual blocks and (except at the last
  level) a Downsample. *Every* encoder entry (stem, res-blocks, Downsamples) pushes its output
  as a skip;
- a middle block of two residual blocks at the lowest resolution;
- per level, from the lowest, ``num_res_blocks[l] + 1`` residual blocks, each first popping a
  skip and concatenating it on channels; an Upsample follows the last one (except at level 0);
- a head GroupNorm -> SiLU -> 3x3 conv (zero-initialised) giving eps and the raw variance
  value v (2 channels for 1-channel images).

A residual block at a map size listed in ``attention_resolutions`` is a *Swin res-block*:
GroupNorm -> SiLU -> 3x3 conv -> GroupNorm*(1 + scale) + shift -> a W-MSA Swin block -> an
SW-MSA Swin block (shift window/2); otherwise a plain res-block: the same front, then SiLU ->
3x3 conv (zero-initialised). Both add a 1x1-projected (or identity) shortcut. The timestep
enters every block by this scale-shift normalisation (a SiLU + Linear per block on the shared
timestep MLP). Down/Upsample are nearest-neighbour resizes, each followed by a 3x3 conv, with no
time input. No dropout or drop-path (the authors' values are 0).

Where the paper's text and the code differ (the code wins here): the text describes three
"sections" per convolutional block (timestep layer + early conv + two residual convs) and two
per Swin block, the timestep "summed" with the early conv, and "trilinear" resampling inside the
last section; the code has the res-block counts above, scale-shift conditioning and separate
nearest + conv resampling blocks. What the text and code share: a symmetric U-shaped
encoder-decoder, convolutional blocks at the two highest resolutions, Swin blocks (WA then
S-WA with shift l/2, each followed by linear layers) below them, and eps plus a variance
coefficient as outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench.generator_base import count_parameters  # noqa: F401 (re-exported)
from mtddpm.swin import SwinTransformerBlock


@dataclass
class NetworkConfig:
    """Defaults are the authors' notebook arguments (``TDM main.ipynb``)."""

    image_size: int = 256
    in_channels: int = 1
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: tuple[int, ...] = (2, 2, 1, 1, 1, 1)
    attention_resolutions: tuple[int, ...] = (64, 32, 16, 8)
    num_heads: tuple[int, ...] = (4, 4, 4, 8, 16, 16)
    window_size: tuple[int, ...] = (4, 4, 4, 8, 8, 4)
    mlp_ratio: float = 4.0
    norm_groups: int = 32
    learn_sigma: bool = True

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    def level_size(self, level: int) -> int:
        return self.image_size // 2**level

    def window(self, level: int) -> tuple[int, int]:
        """(window, shift) at ``level``: a window as large as the map is clamped to it and not
        shifted (as MONAI's ``get_window_size`` does at run time)."""
        size, ws = self.level_size(level), self.window_size[level]
        if size <= ws:
            return size, 0
        return ws, ws // 2

    def validate(self) -> None:
        n = len(self.channel_mult)
        for name in ("num_res_blocks", "num_heads", "window_size"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one entry per level ({n}), got {getattr(self, name)}")
        if self.image_size % (2 ** (n - 1)):
            raise ValueError(f"image size {self.image_size} is not divisible by 2^{n - 1} ({n} levels)")
        if any(b < 1 for b in self.num_res_blocks):
            raise ValueError(f"num_res_blocks must be >= 1 per level, got {self.num_res_blocks}")
        for c in {self.base_channels * m for m in self.channel_mult}:
            if c % self.norm_groups:
                raise ValueError(f"norm_groups {self.norm_groups} must divide every width (got {c})")
        for lvl in range(n):
            if self.level_size(lvl) not in self.attention_resolutions:
                continue
            ws, _ = self.window(lvl)
            width = self.base_channels * self.channel_mult[lvl]
            if self.level_size(lvl) % ws:
                raise ValueError(f"level {lvl}: map {self.level_size(lvl)} not divisible by window {ws}")
            if width % self.num_heads[lvl]:
                raise ValueError(f"level {lvl}: {width} channels not divisible by {self.num_heads[lvl]} heads")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoids of (possibly fractional) timesteps, (B,) -> (B, dim): cos then sin, as the
    authors' ``util_network.timestep_embedding``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the autocast dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Stem(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)


class Downsample(nn.Module):
    """Nearest-neighbour x1/2 then a 3x3 conv (the authors' ``Downsample``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=0.5, mode="nearest"))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv (the authors' ``Upsample``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """Plain or Swin res-block with scale-shift timestep conditioning (see the module docstring)."""

    def __init__(
        self, cin: int, cout: int, emb_dim: int, groups: int, *,
        swin: tuple[int, int, int] | None = None, mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.in_norm = GroupNorm32(groups, cin)
        self.in_conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_norm = GroupNorm32(groups, cout)
        self.swin: nn.ModuleList | None = None
        self.out_conv: nn.Module | None = None
        if swin is not None:
            heads, ws, shift = swin
            self.swin = nn.ModuleList([
                SwinTransformerBlock(cout, heads, ws, shift=0, mlp_ratio=mlp_ratio),
                SwinTransformerBlock(cout, heads, ws, shift=shift, mlp_ratio=mlp_ratio),
            ])
        else:
            self.out_conv = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(F.silu(self.in_norm(x)))
        scale, shift = self.emb(emb).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1.0 + scale) + shift
        if self.swin is not None:
            tokens = h.permute(0, 2, 3, 1)
            for block in self.swin:
                tokens = block(tokens)
            h = tokens.permute(0, 3, 1, 2)
        else:
            h = self.out_conv(F.silu(h))
        return self.skip(x) + h


class DecoderEntry(nn.Module):
    """A decoder res-block (its input already concatenated with a skip), optionally upsampling."""

    def __init__(self, res: ResBlock, up: Upsample | None) -> None:
        super().__init__()
        self.res = res
        self.up = up

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.res(x, emb)
        return self.up(h) if self.up is not None else h


class MTDDPMNet(nn.Module):
    """(x_t, t) -> (B, 2, H, W) for 1-channel images: eps, then the raw variance value v."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        mc, g = cfg.base_channels, cfg.norm_groups
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(level: int, cin: int, cout: int) -> ResBlock:
            swin = None
            if cfg.level_size(level) in cfg.attention_resolutions:
                ws, shift = cfg.window(level)
                swin = (cfg.num_heads[level], ws, shift)
            return ResBlock(cin, cout, emb_dim, g, swin=swin, mlp_ratio=cfg.mlp_ratio)

        self.input_blocks = nn.ModuleList([Stem(cfg.in_channels, mc)])
        skip_channels = [mc]
        ch = mc
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks[level]):
                self.input_blocks.append(res(level, ch, mc * mult))
                ch = mc * mult
                skip_channels.append(ch)
            if level != last:
                self.input_blocks.append(Downsample(ch))
                skip_channels.append(ch)
        # the middle block reuses the lowest level's kind, heads and window (as the authors' does)
        self.middle_block = nn.ModuleList([res(last, ch, ch), res(last, ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks[level] + 1):
                block = res(level, ch + skip_channels.pop(), mc * mult)
                ch = mc * mult
                up = Upsample(ch) if level and i == cfg.num_res_blocks[level] else None
                self.output_blocks.append(DecoderEntry(block, up))
        assert not skip_channels
        self.out = nn.Sequential(GroupNorm32(g, ch), nn.SiLU(), _zero(nn.Conv2d(ch, cfg.out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.cfg.base_channels))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        for block in self.middle_block:
            h = block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
