"""The MT-DDPM network: a symmetric U-shaped encoder-decoder of convolutional and Swin blocks.

Layout (L levels, resolutions R, R/2, ..., R/2^(L-1)):

- encoder block l < L-1: sections at resolution R/2^l, the last one downsampling; its input to
  the last section is kept as the skip for decoder block l;
- encoder block L-1 and decoder block L-1 meet at the lowest resolution (no skip);
- decoder block l: concat(upsampled features, skip_l), sections, the last one upsampling
  (except at l = 0).

A *convolutional block* has ``conv_sections`` (3) residual sections: timestep-embedding
projection + early 3x3 conv (bilinear resampling before it in a down/up section) + two residual
3x3 convs. A *Swin block* has ``swin_sections`` (2) sections: timestep projection + early 3x3 conv,
summed, then WA and S-WA, each followed by a position-wise linear layer. The head gives eps (1
channel) and v in [-1, 1] (1 channel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench.generator_base import count_parameters  # noqa: F401 (re-exported)
from mtddpm.swin import SwinLayer


@dataclass
class NetworkConfig:
    image_size: int = 32
    in_channels: int = 1
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    swin_levels: tuple[bool, ...] = (False, False, True, True)
    num_heads: tuple[int, ...] = (1, 1, 4, 4)
    window_size: tuple[int, ...] = (4, 4, 4, 4)
    conv_sections: int = 3
    swin_sections: int = 2
    mlp_ratio: float = 2.0
    norm_groups: int = 8
    time_embed_mult: int = 4
    variance_activation: str = "tanh"  # or "clamp"

    def validate(self) -> None:
        n = len(self.channel_mult)
        for name in ("swin_levels", "num_heads", "window_size"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one entry per level ({n}), got {getattr(self, name)}")
        if self.image_size % (2 ** (n - 1)):
            raise ValueError(f"image size {self.image_size} is not divisible by 2^{n - 1} ({n} levels)")
        if self.variance_activation not in ("tanh", "clamp"):
            raise ValueError("variance_activation must be 'tanh' or 'clamp'")
        if self.conv_sections < 2 or self.swin_sections < 2:
            # the skip is taken before the resampling section, so a block needs one before it
            raise ValueError("conv_sections and swin_sections must be at least 2")
        for lvl in range(n):
            res = self.image_size // 2**lvl
            ws = min(self.window_size[lvl], res)
            if self.swin_levels[lvl] and res % ws:
                raise ValueError(f"level {lvl}: resolution {res} not divisible by window {ws}")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (integer) timesteps, (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def _resample(x: torch.Tensor, mode: str | None) -> torch.Tensor:
    if mode == "down":
        return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return x


class _Section(nn.Module):
    """The shared front of both section kinds: GN-SiLU, optional bilinear resampling, early 3x3
    conv, plus the projected timestep embedding; and a resampled (1x1-projected) skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, resample: str | None) -> None:
        super().__init__()
        self.resample = resample
        self.norm = _norm(cin, groups)
        self.early = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(emb_dim, cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def front(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.early(_resample(F.silu(self.norm(x)), self.resample))
        h = h + self.temb(F.silu(emb))[:, :, None, None]
        return self.skip(_resample(x, self.resample)) + h


class ConvSection(_Section):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, resample: str | None = None) -> None:
        super().__init__(cin, cout, emb_dim, groups, resample)
        self.res = nn.Sequential(
            _norm(cout, groups), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1),
            _norm(cout, groups), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1),
        )
        nn.init.zeros_(self.res[-1].weight)
        nn.init.zeros_(self.res[-1].bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.front(x, emb)
        return h + self.res(h)


class SwinSection(_Section):
    def __init__(
        self, cin: int, cout: int, emb_dim: int, groups: int, heads: int, window: int,
        mlp_ratio: float, resample: str | None = None,
    ) -> None:
        super().__init__(cin, cout, emb_dim, groups, resample)
        self.wa = SwinLayer(cout, heads, window, shifted=False, mlp_ratio=mlp_ratio)
        self.swa = SwinLayer(cout, heads, window, shifted=True, mlp_ratio=mlp_ratio)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.swa(self.wa(self.front(x, emb)))


class Block(nn.Module):
    def __init__(self, sections: list[nn.Module]) -> None:
        super().__init__()
        self.sections = nn.ModuleList(sections)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, keep_before_last: bool = False):
        before_last = x
        for i, s in enumerate(self.sections):
            if i == len(self.sections) - 1:
                before_last = x
            x = s(x, emb)
        return (x, before_last) if keep_before_last else x


class MTDDPMNet(nn.Module):
    """(x_t, t) -> (eps, v): eps (B, 1, H, W) and v in [-1, 1] (B, 1, H, W)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        c0, L, g = cfg.base_channels, len(cfg.channel_mult), cfg.norm_groups
        emb = c0 * cfg.time_embed_mult
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.stem = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)
        chans = [c0 * m for m in cfg.channel_mult]

        def block(level: int, cin: int, cout: int, resample: str | None) -> Block:
            res = cfg.image_size // 2**level
            n = cfg.swin_sections if cfg.swin_levels[level] else cfg.conv_sections
            out = []
            for i in range(n):
                ci = cin if i == 0 else cout
                rs = resample if i == n - 1 else None
                if cfg.swin_levels[level]:
                    ws = min(cfg.window_size[level], res)
                    out.append(SwinSection(ci, cout, emb, g, cfg.num_heads[level], ws, cfg.mlp_ratio, rs))
                else:
                    out.append(ConvSection(ci, cout, emb, g, rs))
            return Block(out)

        self.down = nn.ModuleList()
        cin = c0
        for lvl in range(L):
            self.down.append(block(lvl, cin, chans[lvl], "down" if lvl < L - 1 else None))
            cin = chans[lvl]
        self.up = nn.ModuleList()  # up[k] is decoder level L-1-k
        for lvl in reversed(range(L)):
            cin_dec = chans[lvl] if lvl == L - 1 else chans[lvl + 1] + chans[lvl]
            self.up.append(block(lvl, cin_dec, chans[lvl], "up" if lvl > 0 else None))
        self.head = nn.Sequential(_norm(chans[0], g), nn.SiLU(), nn.Conv2d(chans[0], 2 * cfg.in_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.time_mlp(timestep_embedding(t, self.cfg.base_channels))
        h = self.stem(x)
        skips = []
        L = len(self.down)
        for lvl, blk in enumerate(self.down):
            if lvl < L - 1:
                h, skip = blk(h, emb, keep_before_last=True)
                skips.append(skip)
            else:
                h = blk(h, emb)
        for k, blk in enumerate(self.up):
            lvl = L - 1 - k
            if lvl < L - 1:
                h = torch.cat([h, skips[lvl]], dim=1)
            h = blk(h, emb)
        out = self.head(h)
        eps, v = out.chunk(2, dim=1)
        v = torch.tanh(v) if self.cfg.variance_activation == "tanh" else v.clamp(-1.0, 1.0)
        return eps, v

