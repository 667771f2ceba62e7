"""A PNG grid of example images, to look at what a preset produces."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from genbench.imageset import quantize_uint8
from genbench.io.atomic import atomic_write_bytes


def grid_png(images: torch.Tensor, *, columns: int | None = None, gap: int = 2) -> bytes:
    """Canonical (N, 1, H, W) images tiled into one 8-bit PNG (black gaps between tiles)."""
    from PIL import Image

    n, _, h, w = images.shape
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    canvas = np.zeros((rows * (h + gap) - gap, cols * (w + gap) - gap), dtype=np.uint8)
    tiles = quantize_uint8(images)[:, 0].numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[i]
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()


def write_grid(images: torch.Tensor, out: Path, *, columns: int | None = None) -> Path:
    return atomic_write_bytes(out, grid_png(images, columns=columns))
