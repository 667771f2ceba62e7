"""Read a folder (recursively) or a single file of images into the canonical ``ImageSet``.

Order is deterministic: files are sorted by their path relative to the root with a natural key
(``img2`` before ``img10``), frames of a multi-image file follow in their own order.
Hidden files and folders (names starting with '.') are ignored. Files whose extension is not an
image format are skipped and listed in ``ImageSet.skipped`` with reason "not an image file",
except files carrying the DICOM marker, which are read whatever their name (DICOM series are
often named by UID, e.g. ``1.2.840.113619.2.55.3.1``).

Value mapping to [-1, 1] (per file, then recorded in ``meta`` and ``mapping``):
- PNG/JPEG/BMP and unsigned TIFF: by the true bit depth, [0, 2^b - 1] -> [-1, 1].
- DICOM, NIfTI, NPY/NPZ, signed/float TIFF ("measurement" values):
  ``hu_window=(lo, hi)`` maps [lo, hi] to [-1, 1] and clips outside it; else ``value_range=(lo,
  hi)`` maps [lo, hi] and values outside it are an error; else the range the format implies
  (DICOM stored bits through the rescale, integer dtypes up to 16 bits by their dtype range);
  else (float data) values inside [-1, 1] are detected: if every such file of the set is within
  [0, 1] the set is taken as [0, 1], otherwise as [-1, 1]; float values outside [-1, 1] and
  integers wider than 16 bits are an error asking for ``value_range``/``hu_window``.
- MONOCHROME1 DICOM and min-is-white TIFF are inverted (bright = high), and their mapping runs
  from ``hi`` to ``lo``.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.errors import InputError
from genbench.imageset import ImageSet, IntensityMapping
from genbench.io.decoded import DecodedFile, ImageConversionWarning, Range, ReadOptions

__all__ = [
    "IMAGE_EXTENSIONS",
    "decode_file",
    "read_image_file",
    "read_image_folder",
    "resize_image",
]

_PILLOW_EXT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp"}
_OTHER_EXT = {
    ".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".npz": "npz", ".dcm": "dicom",
    ".dicom": "dicom", ".ima": "dicom", ".nii": "nifti", ".nii.gz": "nifti",
}
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(sorted({**_PILLOW_EXT, **_OTHER_EXT}))
_DISPLAY_NAME = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF", "npy": "NPY",
                 "npz": "NPZ", "dicom": "DICOM", "nifti": "NIfTI"}
# tolerance when checking values against a declared range, relative to its width
_RANGE_TOL = 1e-6


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def detect_format(path: Path) -> str | None:
    """The format name for a file, from its extension or the DICOM marker; None if not an image."""
    ext = _extension(path)
    fmt = _PILLOW_EXT.get(ext) or _OTHER_EXT.get(ext)
    if fmt is not None:
        return fmt
    from genbench.io.dicom import has_dicom_magic

    return "dicom" if has_dicom_magic(path) else None


def _decoder(fmt: str) -> Callable[[Path], DecodedFile]:
    if fmt in ("png", "jpeg", "bmp"):
        from genbench.io.raster import decode_pillow

        return lambda p: decode_pillow(p, fmt)
    if fmt == "tiff":
        from genbench.io.raster import decode_tiff

        return decode_tiff
    if fmt == "npy":
        from genbench.io.arrays import decode_npy

        return decode_npy
    if fmt == "npz":
        from genbench.io.arrays import decode_npz

        return decode_npz
    if fmt == "dicom":
        from genbench.io.dicom import decode_dicom

        return decode_dicom
    if fmt == "nifti":
        from genbench.io.nifti import decode_nifti

        return decode_nifti
    raise AssertionError(f"no decoder for {fmt}")


def _one_line(exc: BaseException, path: Path | None = None) -> str:
    text = str(exc)
    if path is not None:  # the error line already starts with the path: don't repeat it
        for form in (f"'{path}'", f'"{path}"', str(path)):
            text = text.replace(form, "")
    text = " ".join(text.split()).rstrip(" :") or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def decode_file(path: Path, fmt: str | None = None) -> DecodedFile:
    """Decode one file; any failure becomes an ``InputError`` naming the file (never a traceback)."""
    fmt = fmt or detect_format(path)
    if fmt is None:
        raise InputError(
            f"not an image file (supported extensions: {', '.join(IMAGE_EXTENSIONS)})", str(path))
    try:
        decoded = _decoder(fmt)(path)
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # library errors (PIL, pydicom, nibabel, numpy, zlib, OSError)
        raise InputError(f"cannot read {_DISPLAY_NAME[fmt]} file: {_one_line(exc, path)}",
                         str(path)) from exc
    if not decoded.frames:
        raise InputError(f"{_DISPLAY_NAME[fmt]} file holds no images", str(path))
    for sid, frame in decoded.frames:
        if frame.ndim != 2 or min(frame.shape) < 1:
            raise InputError(f"image {sid} has unusable shape {frame.shape}", str(path))
    return decoded


# ---------------------------------------------------------------------------------------------
# values -> canonical


@dataclass
class _Resolved:
    """A decoded file with its mapping decided (``rng`` None: float data awaiting set detection)."""

    decoded: DecodedFile
    rng: Range | None
    unit: str
    how: str  # "bit depth", "dtype", "stored bits", "hu_window", "value_range", "detected"


def _minmax(decoded: DecodedFile) -> tuple[float, float]:
    lo = min(float(np.min(f)) for _, f in decoded.frames)
    hi = max(float(np.max(f)) for _, f in decoded.frames)
    return lo, hi


def _check_finite(decoded: DecodedFile) -> None:
    for sid, frame in decoded.frames:
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():
            n_nan = int(np.isnan(frame).sum())
            n_inf = int(np.isinf(frame).sum())
            which = "image" if sid == decoded.path else f"image {sid[len(decoded.path):]}"
            raise InputError(f"{which} contains {n_nan} NaN and {n_inf} Inf values",
                             decoded.path)


def _resolve(decoded: DecodedFile, opts: ReadOptions) -> _Resolved:
    _check_finite(decoded)
    if not decoded.physical:
        assert decoded.native_range is not None
        return _Resolved(decoded, decoded.native_range, decoded.unit, "bit depth")
    if opts.hu_window is not None:
        return _Resolved(decoded, opts.hu_window, "HU", "hu_window")
    declared, how = opts.value_range, "value_range"
    if declared is None and decoded.stored_range is not None:
        declared, how = decoded.stored_range, "value_range stored in the file"
    if declared is not None:
        lo, hi = _minmax(decoded)
        tol = _RANGE_TOL * (declared[1] - declared[0])
        if lo < declared[0] - tol or hi > declared[1] + tol:
            raise InputError(
                f"values span [{lo:g}, {hi:g}], outside the declared {how} "
                f"[{declared[0]:g}, {declared[1]:g}]", decoded.path)
        return _Resolved(decoded, declared, decoded.unit, how)
    if decoded.native_range is not None:
        how = "stored bits" if decoded.format == "dicom" else "dtype range"
        return _Resolved(decoded, decoded.native_range, decoded.unit, how)
    kind = np.dtype(decoded.dtype).kind
    if kind in "iu":
        raise InputError(
            f"{decoded.dtype} values have no implied range; pass value_range (--value-range LO,HI) "
            "or hu_window (--hu-window LO,HI)", decoded.path)
    lo, hi = _minmax(decoded)
    if lo < -1.0 or hi > 1.0:
        raise InputError(
            f"float values span [{lo:g}, {hi:g}], which is neither [0, 1] nor [-1, 1]; pass "
            "value_range (--value-range LO,HI) or hu_window (--hu-window LO,HI)", decoded.path)
    return _Resolved(decoded, None, decoded.unit, "detected")


def _canonical(frame: np.ndarray, rng: Range, invert: bool) -> np.ndarray:
    lo, hi = rng
    x = (frame.astype(np.float64) - lo) * (2.0 / (hi - lo)) - 1.0
    np.clip(x, -1.0, 1.0, out=x)
    if invert:
        x = -x
    return x.astype(np.float32)


def _mapping(rng: Range, unit: str, invert: bool) -> IntensityMapping:
    lo, hi = rng
    return IntensityMapping.from_range(hi, lo, unit) if invert else IntensityMapping.from_range(
        lo, hi, unit)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a canonical 2-D image to size x size: bilinear with antialiasing (aspect not kept)."""
    if image.shape == (size, size):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                          align_corners=False, antialias=True)
    return out[0, 0].clamp_(-1.0, 1.0).numpy()


# ---------------------------------------------------------------------------------------------
# folders


def _natural_key(rel: str) -> tuple:
    parts = []
    for part in rel.split("/"):
        parts.append(tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)))
    # the raw string breaks ties such as img1 / img01 so that the order is total
    return (tuple(parts), rel)


def _walk(root: Path) -> Iterator[Path]:
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def list_files(root: Path) -> list[Path]:
    """Every non-hidden regular file under ``root``, in the deterministic reading order."""
    files = list(_walk(root))
    return sorted(files, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def _progress(items: list, progress: Any) -> Iterable:
    """``items``, counted as one ``reading images`` step of :mod:`genbench.progress`:
    ``progress`` is a progress factory, True (rich bars on stderr) or False/None (silent)."""
    if not progress:
        yield from items
        return
    from genbench.progress import Step, rich_bars

    if callable(progress):
        with Step(progress, "reading images", len(items)) as step:
            for item in items:
                yield item
                step(1)
        return
    from rich.console import Console

    with rich_bars(Console(stderr=True)) as bars, Step(bars, "reading images", len(items)) as step:
        for item in items:
            yield item
            step(1)


def _summarise(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" (+{len(paths) - limit} more)" if len(paths) > limit else "")


def _warn_notes(notes: dict[str, list[str]], stacklevel: int) -> None:
    for note, paths in notes.items():
        warnings.warn(f"{note}: {_summarise(paths)}", ImageConversionWarning,
                      stacklevel=stacklevel)


def _size_error(root: str, frames: list[tuple[str, np.ndarray]]) -> InputError:
    by_size: dict[tuple[int, int], list[str]] = {}
    for sid, arr in frames:
        by_size.setdefault(arr.shape, []).append(sid)
    ranked = sorted(by_size.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    listing = "; ".join(
        f"{h}x{w} ({len(ids)} image{'s' if len(ids) != 1 else ''}, e.g. {ids[0]})"
        for (h, w), ids in ranked)
    return InputError(
        f"images have different sizes (height x width): {listing}; pass --resize N "
        "(resize=N) to resize all to NxN", root)


def _read(paths: list[tuple[Path, str]], root: str, opts: ReadOptions,
          skipped: list[tuple[str, str]], stacklevel: int) -> ImageSet:
    resolved: list[_Resolved] = []
    for path, fmt in _progress(paths, opts.progress):
        try:
            resolved.append(_resolve(decode_file(path, fmt), opts))
        except InputError as exc:
            if not opts.skip_bad:
                raise
            skipped.append((str(path), str(exc).removeprefix(f"{path}: ")))
    if not resolved:
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        detail = f" ({len(skipped)} skipped: {reasons}{' ...' if len(skipped) > 3 else ''})" \
            if skipped else ""
        raise InputError(f"no readable images found{detail}", root)

    # float data inside [-1, 1]: one decision for the whole set, so files stay comparable
    pending = [r for r in resolved if r.rng is None]
    if pending:
        nonneg = all(_minmax(r.decoded)[0] >= 0.0 for r in pending)
        for r in pending:
            r.rng = (0.0, 1.0) if nonneg else (-1.0, 1.0)

    frames: list[tuple[str, np.ndarray]] = []
    notes: dict[str, list[str]] = {}
    ignored_window: list[str] = []
    for r in resolved:
        d = r.decoded
        assert r.rng is not None
        for sid, raw in d.frames:
            frames.append((sid, _canonical(raw, r.rng, d.invert)))
        for note in d.notes:
            notes.setdefault(note, []).append(d.path)
        if not d.physical and (opts.hu_window is not None or opts.value_range is not None):
            ignored_window.append(d.path)
    if ignored_window:
        notes["hu_window/value_range ignored for display-level images (scaled by bit depth)"] = \
            ignored_window

    sizes = Counter(arr.shape for _, arr in frames)
    resize_meta = None
    if opts.resize is not None:
        n_resized = sum(c for s, c in sizes.items() if s != (opts.resize, opts.resize))
        frames = [(sid, resize_image(arr, opts.resize)) for sid, arr in frames]
        resize_meta = {
            "size": opts.resize, "method": "bilinear, antialiased (torch interpolate)",
            "aspect_preserved": False, "n_resized": n_resized,
            "original_sizes": {f"{h}x{w}": c for (h, w), c in sorted(sizes.items())},
        }
    elif len(sizes) > 1:
        raise _size_error(root, frames)

    _warn_notes(notes, stacklevel)
    images = torch.from_numpy(np.stack([arr for _, arr in frames]))[:, None]
    return ImageSet(images=images, sources=[sid for sid, _ in frames],
                    mapping=_set_mapping(resolved), meta=_set_meta(root, resolved, opts,
                                                                   resize_meta, notes),
                    skipped=skipped)


def _set_mapping(resolved: list[_Resolved]) -> IntensityMapping:
    maps = {(r.rng, r.unit, r.decoded.invert) for r in resolved}
    if len(maps) == 1:
        rng, unit, invert = maps.pop()
        assert rng is not None
        return _mapping(rng, unit, invert)
    return IntensityMapping()  # files with different mappings: only the canonical scale is shared


def _uniform(values: list) -> object:
    distinct = sorted(set(values), key=str)
    return distinct[0] if len(distinct) == 1 else "mixed"


def _set_meta(root: str, resolved: list[_Resolved], opts: ReadOptions, resize_meta: dict | None,
              notes: dict[str, list[str]]) -> dict:
    ranges = Counter(
        f"[{r.rng[0]:g}, {r.rng[1]:g}] {r.unit} ({r.how}{', inverted' if r.decoded.invert else ''})"
        for r in resolved if r.rng is not None)
    files = Counter(
        f"{r.decoded.format} {r.decoded.dtype}"
        + (f" {r.decoded.bit_depth}-bit" if r.decoded.bit_depth else "") for r in resolved)
    maps = {(r.rng, r.unit, r.decoded.invert) for r in resolved}
    return {
        "reader": "genbench.io",
        "path": root,
        "n_files": len(resolved),
        "format": _uniform([r.decoded.format for r in resolved]),
        "dtype": _uniform([r.decoded.dtype for r in resolved]),
        "bit_depth": _uniform([r.decoded.bit_depth for r in resolved]),
        "files_by_format": dict(sorted(files.items())),
        "value_ranges": dict(sorted(ranges.items())),
        "mapping": "per file (mixed)" if len(maps) > 1 else "shared",
        "hu_window": list(opts.hu_window) if opts.hu_window else None,
        "value_range": list(opts.value_range) if opts.value_range else None,
        "resize": resize_meta,
        "conversions": {note: len(paths) for note, paths in notes.items()},
    }


def _options(resize: int | None, skip_bad: bool, hu_window: Range | None,
             value_range: Range | None, progress: Any) -> ReadOptions:
    return ReadOptions(resize=resize, skip_bad=skip_bad, hu_window=hu_window,
                       value_range=value_range, progress=progress)


def read_image_folder(
    path: str | Path,
    *,
    resize: int | None = None,
    skip_bad: bool = False,
    hu_window: Range | None = None,
    value_range: Range | None = None,
    progress: Any = False,
) -> ImageSet:
    """Read every image under ``path`` (recursively, in a deterministic order), or one file.

    Returns float32 (N, 1, H, W) in [-1, 1]; ``sources`` are file paths (``path#k`` for the k-th
    image of a multi-image file). Raises ``InputError`` naming the file for unreadable or bad
    files (with ``skip_bad=True`` they are skipped and listed in ``skipped``), for a missing or
    empty folder, and for images of different sizes unless ``resize=N`` is given.
    """
    opts = _options(resize, skip_bad, hu_window, value_range, progress)
    root = Path(path)
    if not root.exists():
        raise InputError("no such file or folder", str(root))
    skipped: list[tuple[str, str]] = []
    if root.is_file():
        fmt = detect_format(root)
        if fmt is None:
            decode_file(root)  # raises the "not an image file" error
        return _read([(root, fmt)], str(root), opts, skipped, stacklevel=4)
    if not root.is_dir():
        raise InputError("not a regular file or folder", str(root))
    try:
        files = list_files(root)
    except OSError as exc:
        raise InputError(f"cannot list folder: {_one_line(exc)}", str(root)) from exc
    todo: list[tuple[Path, str]] = []
    for f in files:
        fmt = detect_format(f)
        if fmt is None:
            skipped.append((str(f), "not an image file"))
        else:
            todo.append((f, fmt))
    if not todo:
        extra = f" ({len(skipped)} other files skipped, e.g. {skipped[0][0]})" if skipped else ""
        raise InputError(f"folder contains no image files{extra}; supported extensions: "
                         f"{', '.join(IMAGE_EXTENSIONS)}", str(root))
    return _read(todo, str(root), opts, skipped, stacklevel=4)


def read_image_file(
    path: str | Path,
    *,
    resize: int | None = None,
    skip_bad: bool = False,
    hu_window: Range | None = None,
    value_range: Range | None = None,
    progress: Any = False,
) -> list[tuple[str, np.ndarray]]:
    """Read one file into ``[(source_id, float32 2-D canonical image), ...]``.

    Options as ``read_image_folder``; range detection for float data is per file here.
    ``skip_bad`` has nothing to skip to for a single file, so errors are always raised.
    """
    opts = _options(resize, False, hu_window, value_range, progress)
    p = Path(path)
    if not p.is_file():
        raise InputError("no such file" if not p.exists() else "not a regular file", str(p))
    fmt = detect_format(p)
    if fmt is None:
        decode_file(p)  # raises the "not an image file" error
    iset = _read([(p, fmt)], str(p), opts, [], stacklevel=4)
    return [(sid, iset.images[i, 0].numpy()) for i, sid in enumerate(iset.sources)]
