"""The canonical in-memory form of a set of 2D images.

Every reader produces, and every metric and generator consumes, float32 tensors of shape
(N, 1, H, W) with values in [-1, 1]. Metadata travels alongside so that results can be traced
to their files and intensities mapped back to physical units (HU, raw scanner values).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def pixel_sha256(images: torch.Tensor, extra: bytes = b"") -> str:
    """The one content hash of an image tensor: shape, then float32 little-endian pixels, then ``extra``
    (e.g. labels). Cache keys and stage identities depend on it, so its byte layout must not change."""
    h = hashlib.sha256()
    h.update(repr(tuple(images.shape)).encode())
    h.update(images.detach().cpu().float().numpy().astype("<f4", copy=False).tobytes())
    h.update(extra)
    return h.hexdigest()


@dataclass
class IntensityMapping:
    """Affine map from canonical [-1, 1] back to the source's units: ``raw = scale * x + offset``."""

    scale: float = 1.0
    offset: float = 0.0
    unit: str = "canonical"

    def to_raw(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        return x * self.scale + self.offset

    def to_canonical(self, raw: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        return (raw - self.offset) / self.scale

    @classmethod
    def from_range(cls, lo: float, hi: float, unit: str) -> "IntensityMapping":
        """The mapping that sends [lo, hi] in source units onto [-1, 1]."""
        return cls(scale=(hi - lo) / 2.0, offset=(hi + lo) / 2.0, unit=unit)

    def as_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset, "unit": self.unit}


@dataclass
class ImageSet:
    """N single-channel images in canonical form plus where they came from."""

    images: torch.Tensor
    sources: list[str] = field(default_factory=list)
    mapping: IntensityMapping = field(default_factory=IntensityMapping)
    meta: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"ImageSet expects (N, 1, H, W), got {tuple(x.shape)}")
        self.images = x.to(torch.float32).contiguous()
        if not self.sources:
            self.sources = [f"#{i}" for i in range(len(self.images))]
        if len(self.sources) != len(self.images):
            raise ValueError("ImageSet: one source entry per image is required")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def sha256(self) -> str:
        """Content hash of the decoded pixels (shape included), independent of file names."""
        return pixel_sha256(self.images)

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> "ImageSet":
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return ImageSet(
            images=self.images[idx],
            sources=[self.sources[i] for i in idx.tolist()],
            mapping=self.mapping,
            meta=dict(self.meta),
        )

    def to_uint8(self) -> torch.Tensor:
        """Deterministic quantisation of [-1, 1] to uint8 (round half up), shape (N, 1, H, W)."""
        return quantize_uint8(self.images)


def quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """Map canonical [-1, 1] to uint8 {0..255}: floor((x + 1) * 127.5 + 0.5), clamped."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8)
