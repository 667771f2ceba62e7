"""Window attention (W-MSA) and shifted-window attention (SW-MSA), Liu et al. 2021, on 2-D maps.

Own implementation on ``F.scaled_dot_product_attention``, following the blocks the MT-DDPM
authors adapted from MONAI (``network/SwinUnetr.py`` in their repository): pre-norm,
``x + WA(LN(x))`` then ``x + MLP(LN(x))`` with a 4x GELU MLP, a learned relative position bias
per head, qkv with bias, no dropout or drop-path. The shifted block rolls the map by ``-shift``
so that its windows straddle the previous block's window borders; tokens that only share a
window because of the cyclic wrap (top/left edge next to bottom/right edge) are kept apart by a
mask (cross-checked against MONAI's ``compute_mask`` in the tests), and the roll is undone after
attention so every output sits at its token's original position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws*ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device=None) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) boolean: True where query and key may attend (same region).

    After rolling by ``-shift`` the last row and column of windows mix tokens from opposite
    image borders; label the three bands per axis (interior, the part of the last window that
    was there before the roll, and the wrapped-around strip) and allow only equal labels.
    """
    labels = torch.zeros(h, w, dtype=torch.long, device=device)
    bands = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    k = 0
    for hs in bands:
        for wsl in bands:
            labels[hs, wsl] = k
            k += 1
    win = window_partition(labels.view(1, h, w, 1), ws).squeeze(-1)  # (nW, N)
    return win.unsqueeze(1) == win.unsqueeze(2)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channels {dim} not divisible by {num_heads} heads")
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        ws = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)  # (N, N, 2) >= 0
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1], persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def relative_bias(self) -> torch.Tensor:
        n = self.window_size**2
        return self.relative_position_bias_table[self.relative_position_index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B * nW, N, C); mask: (nW, N, N) boolean (True = may attend) or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_bias()[None].to(q.dtype)  # (1, heads, N, N)
        if mask is not None:
            nw = mask.shape[0]
            neg = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
            bias = (bias.unsqueeze(0) + neg[None, :, None]).expand(bw // nw, nw, self.num_heads, n, n)
            bias = bias.reshape(bw, self.num_heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinTransformerBlock(nn.Module):
    """``x + (S)W-MSA(LN(x))`` then ``x + MLP(LN(x))`` on channels-last maps (B, H, W, C).

    ``shift = 0`` is W-MSA, ``shift = window_size // 2`` SW-MSA.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if not 0 <= shift < window_size:
            raise ValueError(f"shift {shift} must lie in [0, window {window_size})")
        self.window_size, self.shift = window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, int(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def _mask(self, h: int, w: int, device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._mask_cache:
            self._mask_cache[key] = shifted_window_mask(h, w, self.window_size, self.shift, device)
        return self._mask_cache[key]

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The (shifted) window attention alone on (B, H, W, C), without the residual."""
        _, h, w, _ = x.shape
        ws, shift = self.window_size, self.shift
        if h % ws or w % ws:
            raise ValueError(f"feature map {h}x{w} is not divisible by the attention window {ws}")
        mask = None
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = self._mask(h, w, x.device)
        y = window_reverse(self.attn(window_partition(x, ws), mask), ws, h, w)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))
