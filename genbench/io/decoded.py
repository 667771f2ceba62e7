"""What a format decoder hands to the reader: raw 2-D frames plus how to interpret their values.

Decoders (``raster``, ``arrays``, ``dicom``, ``nifti``) only decode; the mapping to the canonical
[-1, 1] range, the checks on values and the set-level decisions live in ``genbench.io.readers``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genbench.errors import UsageError

# ITU-R BT.601 luma weights (what PIL's convert("L") uses, but applied at full bit depth).
LUMA_601 = (0.299, 0.587, 0.114)

Range = tuple[float, float]


class ImageConversionWarning(UserWarning):
    """An input was converted in a way a user should know about (colour to luminance, ...)."""


@dataclass(frozen=True)
class ReadOptions:
    """Options shared by every reader (see ``read_image_folder``)."""

    resize: int | None = None
    skip_bad: bool = False
    hu_window: Range | None = None
    value_range: Range | None = None
    progress: Any = False  # a genbench.progress factory, True (rich bars) or False

    def __post_init__(self) -> None:
        if self.resize is not None and (isinstance(self.resize, bool) or not isinstance(
                self.resize, int) or self.resize < 1):
            raise UsageError(f"resize must be a positive integer, got {self.resize!r}")
        for name in ("hu_window", "value_range"):
            rng = getattr(self, name)
            if rng is None:
                continue
            if len(rng) != 2:
                raise UsageError(f"{name} must be two numbers LO,HI, got {rng!r}")
            lo, hi = float(rng[0]), float(rng[1])
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise UsageError(f"{name} must satisfy LO < HI (finite), got {rng!r}")
            object.__setattr__(self, name, (lo, hi))


@dataclass
class DecodedFile:
    """One decoded file.

    ``frames`` hold raw values in the file's own units (e.g. 0..65535, or HU after a DICOM
    rescale). ``native_range`` is the raw interval that maps onto [-1, 1] when the format
    implies one (bit depth, integer dtype, DICOM stored bits); None means the values must be
    classified (float arrays). ``physical`` marks values in measurement units (DICOM, NIfTI,
    arrays, signed/float TIFF), to which ``hu_window`` / ``value_range`` apply; display levels
    (PNG, JPEG, unsigned TIFF) are always scaled by their bit depth.
    """

    path: str
    format: str
    dtype: str
    frames: list[tuple[str, np.ndarray]]
    native_range: Range | None
    physical: bool
    bit_depth: int | None = None
    unit: str = "raw"
    invert: bool = False
    notes: list[str] = field(default_factory=list)
    # a range recorded inside the file itself (genbench's own .npz), honoured like value_range
    stored_range: Range | None = None


def frame_id(path: str | os.PathLike[str], k: int | None) -> str:
    """Source id of frame ``k`` of a multi-image file (``path#k``), or the path for single images."""
    return str(path) if k is None else f"{path}#{k}"


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an (H, W, 3|4) array, alpha ignored, in float64 and the input's units."""
    x = rgb[..., :3].astype(np.float64)
    r, g, b = LUMA_601
    return r * x[..., 0] + g * x[..., 1] + b * x[..., 2]


def integer_dtype_range(dtype: np.dtype) -> Range | None:
    """The value range implied by an integer dtype, for dtypes up to 16 bits (and bool).

    Wider integers (int32, int64, ...) imply no useful range: numpy's default int64 holding
    0..255 would be squashed into a sliver of [-1, 1], so those need an explicit range.
    """
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return (0.0, 1.0)
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        info = np.iinfo(dtype)
        return (float(info.min), float(info.max))
    return None
