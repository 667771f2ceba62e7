"""Raster image decoders: PNG/JPEG/BMP through Pillow, TIFF through tifffile.

Values are scaled by the file's true bit depth (8-bit -> [0, 255], 16-bit -> [0, 65535]); the
16-bit samples are never routed through PIL's ``convert("RGB")``/``convert("L")``, which clip
them to 8 bits. Colour images become ITU-R 601 luminance computed at full precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genbench.errors import InputError
from genbench.io.decoded import DecodedFile, frame_id, integer_dtype_range, luminance

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk, or None when it is not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _colour_note(rgb: np.ndarray) -> str:
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return "colour image with identical R, G, B channels: used as grayscale"
    return "colour image converted to grayscale (ITU-R 601 luminance)"


def decode_pillow(path: Path, fmt: str) -> DecodedFile:
    """Decode a PNG, JPEG or BMP file (first frame)."""
    from PIL import Image

    notes: list[str] = []
    header = _png_header(path) if fmt == "png" else None
    try:
        opened = Image.open(path)
    except Image.UnidentifiedImageError as exc:
        raise InputError(f"not a readable {fmt.upper()} file (unrecognised content, or the header "
                         "is damaged or truncated)", str(path)) from exc
    with opened as im:
        im.load()  # decoding happens here: truncated files raise now, inside our guard
        mode = im.mode
        if mode == "1":
            arr = np.asarray(im, dtype=bool)
            return DecodedFile(str(path), fmt, "bool", [(str(path), arr)], (0.0, 1.0),
                               physical=False, bit_depth=1, unit="level")
        if mode == "L":
            arr = np.asarray(im)
            return DecodedFile(str(path), fmt, "uint8", [(str(path), arr)], (0.0, 255.0),
                               physical=False, bit_depth=8, unit="level")
        if mode.startswith("I;16"):
            # np.asarray honours the byte order of I;16B / I;16L
            arr = np.asarray(im).astype(np.uint16)
            return DecodedFile(str(path), fmt, "uint16", [(str(path), arr)], (0.0, 65535.0),
                               physical=False, bit_depth=16, unit="level")
        if mode == "I":
            # Older Pillows open 16-bit grayscale PNGs as 32-bit "I"; the IHDR knows the depth.
            if header is not None and header[0] == 16:
                arr = np.asarray(im).astype(np.int64)
                return DecodedFile(str(path), fmt, "uint16", [(str(path), arr)],
                                   (0.0, 65535.0), physical=False, bit_depth=16, unit="level")
            raise InputError(f"unsupported 32-bit integer {fmt.upper()} image", str(path))
        if mode == "LA":
            arr = np.asarray(im)[..., 0]
            notes.append("alpha channel ignored")
            return DecodedFile(str(path), fmt, "uint8", [(str(path), arr)], (0.0, 255.0),
                               physical=False, bit_depth=8, unit="level", notes=notes)
        if mode == "F":
            arr = np.asarray(im, dtype=np.float32)
            return DecodedFile(str(path), fmt, "float32", [(str(path), arr)], None,
                               physical=True, bit_depth=32)
        # Every remaining Pillow mode (RGB, RGBA, P, PA, CMYK, YCbCr, ...) holds 8-bit samples,
        # so converting to RGB loses nothing.
        rgb = np.asarray(im.convert("RGB"))
    notes.append(_colour_note(rgb))
    if header is not None and header[0] == 16:
        notes.append("16-bit colour PNG decoded at 8-bit precision (Pillow's limit)")
    if "identical" in notes[0]:
        gray = rgb[..., 0]
    else:
        gray = luminance(rgb)
    return DecodedFile(str(path), fmt, "uint8", [(str(path), gray)], (0.0, 255.0),
                       physical=False, bit_depth=8, unit="level", notes=notes)


def decode_tiff(path: Path) -> DecodedFile:
    """Decode every full-resolution page of a TIFF file (``path#k`` when there are several)."""
    import tifffile

    frames: list[tuple[str, np.ndarray]] = []
    notes: list[str] = []
    info: dict[str, object] = {}
    with tifffile.TiffFile(path) as tif:
        pages = [p for p in tif.pages if not getattr(p.keyframe, "is_reduced", False)]
        if not pages:
            raise InputError("TIFF file has no image pages", str(path))
        for k, page in enumerate(pages):
            key = page.keyframe
            arr = page.asarray()
            photometric = int(key.photometric)
            bits = int(key.bitspersample)
            sampleformat = int(key.sampleformat)
            if arr.ndim == 3 and int(key.planarconfig) == 2:
                arr = np.moveaxis(arr, 0, -1)  # planar (S, H, W) -> interleaved (H, W, S)
            if photometric == int(tifffile.PHOTOMETRIC.PALETTE):
                arr = np.moveaxis(key.colormap[:, arr], 0, -1)  # 16-bit RGB entries
                bits, sampleformat = 16, 1
                photometric = int(tifffile.PHOTOMETRIC.RGB)
            if arr.ndim == 3:
                if photometric in (int(tifffile.PHOTOMETRIC.RGB), int(tifffile.PHOTOMETRIC.YCBCR)):
                    if not notes:
                        notes.append(_colour_note(arr[..., :3]))
                    arr = arr[..., 0] if "identical" in notes[0] else luminance(arr)
                else:
                    arr = arr[..., 0]  # grayscale + extra samples (alpha)
                    if "alpha channel ignored" not in notes:
                        notes.append("alpha channel ignored")
            if arr.ndim != 2:
                raise InputError(f"unsupported TIFF page shape {tuple(page.shape)}", str(path))
            frames.append((frame_id(path, k if len(pages) > 1 else None), arr))
            page_info = (photometric == int(tifffile.PHOTOMETRIC.MINISWHITE), bits, sampleformat,
                         str(page.dtype))
            info.setdefault("first", page_info)
            if page_info != info["first"]:
                raise InputError("TIFF pages differ in bit depth or sample format", str(path))
    invert, bits, sampleformat, dtype = info["first"]  # type: ignore[misc]
    if sampleformat == 3:  # IEEE float: measurement values, range unknown
        return DecodedFile(str(path), "tiff", dtype, frames, None, physical=True, bit_depth=bits,
                           invert=bool(invert), notes=notes)
    if sampleformat == 2:  # signed integers: measurement values (e.g. CT in HU)
        rng = integer_dtype_range(np.dtype(dtype))
        return DecodedFile(str(path), "tiff", dtype, frames, rng, physical=True, bit_depth=bits,
                           invert=bool(invert), notes=notes)
    if bits > 16:
        raise InputError(f"unsupported {bits}-bit unsigned TIFF (8 and 16 bits are supported)",
                         str(path))
    return DecodedFile(str(path), "tiff", dtype, frames, (0.0, float(2**bits - 1)),
                       physical=False, bit_depth=bits, unit="level", invert=bool(invert),
                       notes=notes)
