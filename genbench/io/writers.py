"""Write canonical images as PNG folders (8- or 16-bit) or one ``.npz``; every file atomically.

Quantisation is deterministic and matches the readers exactly:
8-bit ``floor((x + 1) * 127.5 + 0.5)`` (``genbench.imageset.quantize_uint8``, the same bytes the
metrics see), 16-bit ``floor((x + 1) * 32767.5 + 0.5)``; reading back gives ``v / (2^b - 1) * 2 - 1``.
Values outside [-1, 1] are clamped; NaN/Inf are refused. Existing files are never overwritten
unless ``overwrite=True``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.errors import InputError, UsageError
from genbench.imageset import ImageSet, quantize_uint8
from genbench.io.arrays import IMAGES_KEY, META_KEY
from genbench.io.atomic import atomic_write_bytes

__all__ = ["quantize_uint16", "write_npz", "write_png_folder"]


def quantize_uint16(x: torch.Tensor) -> torch.Tensor:
    """Map canonical [-1, 1] to {0..65535}: floor((x + 1) * 32767.5 + 0.5), clamped (as int32)."""
    y = ((x.to(torch.float64).clamp(-1, 1) + 1.0) * 32767.5 + 0.5).floor().clamp(0, 65535)
    return y.to(torch.int32)


def _as_tensor(images: torch.Tensor | np.ndarray | ImageSet, where: str) -> torch.Tensor:
    x = images.images if isinstance(images, ImageSet) else images
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x.detach().cpu()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise UsageError(f"expected images of shape (N, 1, H, W) or (N, H, W), got "
                         f"{tuple(x.shape)}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise InputError(f"refusing to write: {n_bad} image(s) contain NaN or Inf", where)
    return x.to(torch.float32)


def write_png_folder(
    images: torch.Tensor | np.ndarray | ImageSet,
    folder: str | Path,
    *,
    bit_depth: int = 8,
    prefix: str = "img",
    overwrite: bool = False,
) -> list[Path]:
    """Write each image as ``{prefix}_{i:05d}.png`` (grayscale, 8 or 16 bits); returns the paths.

    The index is zero-padded to at least 5 digits so that name order is image order.
    """
    from PIL import Image

    if bit_depth not in (8, 16):
        raise UsageError(f"bit_depth must be 8 or 16, got {bit_depth}")
    folder = Path(folder)
    x = _as_tensor(images, str(folder))
    width = max(5, len(str(max(len(x) - 1, 0))))
    paths = [folder / f"{prefix}_{i:0{width}d}.png" for i in range(len(x))]
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{len(existing)} file(s) would be overwritten (e.g. {existing[0].name}); "
                         "choose an empty folder or pass overwrite=True", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    q = quantize_uint8(x) if bit_depth == 8 else quantize_uint16(x)
    for path, img in zip(paths, q[:, 0].numpy()):
        arr = img.astype(np.uint8 if bit_depth == 8 else np.uint16)
        pil = Image.fromarray(arr)  # uint8 -> "L", uint16 -> "I;16": both grayscale PNG
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())
    return paths


def _jsonable(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return value


def write_npz(images: torch.Tensor | np.ndarray | ImageSet, path: str | Path, *,
              overwrite: bool = False, **meta: Any) -> Path:
    """Write float32 images (N, H, W) in [-1, 1] as a compressed ``.npz`` with JSON ``meta``.

    The archive holds ``images`` and ``meta`` (a JSON string with ``value_range`` [-1, 1] plus the
    given ``meta``; for an ``ImageSet`` also its ``sources`` and ``mapping``). Reading it back with
    ``read_image_folder`` restores the same values.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise UsageError(f"write_npz needs a .npz path, got {path}")
    if path.exists() and not overwrite:
        raise InputError("file exists; pass overwrite=True to replace it", str(path))
    x = _as_tensor(images, str(path)).clamp(-1.0, 1.0)
    record: dict[str, Any] = {}
    if isinstance(images, ImageSet):
        record.update({"sources": images.sources, "mapping": images.mapping.as_dict()})
    record.update({k: _jsonable(v) for k, v in meta.items()})
    record["value_range"] = [-1.0, 1.0]
    try:
        text = json.dumps(record, default=str)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"write_npz meta is not JSON-serialisable: {exc}") from exc
    buf = io.BytesIO()
    np.savez_compressed(buf, **{IMAGES_KEY: x[:, 0].numpy(), META_KEY: np.array(text)})
    return atomic_write_bytes(path, buf.getvalue())
