"""DICOM decoder (pydicom).

The modality LUT (RescaleSlope/RescaleIntercept, or a Modality LUT Sequence) is applied, so CT
values are in HU. Without a window, the canonical range is the stored bit range
(BitsStored, PixelRepresentation) carried through the same modality LUT, so nothing is clipped.
MONOCHROME1 (low values displayed white) is inverted so that bright is always high.
Colour data (RGB, YBR) become luminance with a warning. Multi-frame files give ``path#k``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genbench.errors import InputError
from genbench.io.decoded import DecodedFile, frame_id, luminance

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
# genbench depends on pylibjpeg with its libjpeg, openjpeg and rle plugins, so JPEG (baseline,
# extended, lossless), JPEG-LS, JPEG 2000, HTJ2K and RLE decode out of the box; this hint is
# for the syntaxes none of them covers (JPEG 2000 Part 2, video) or a broken installation.
DECODER_HINT = (
    "install a pydicom pixel-data plugin for it (`pip install python-gdcm` covers the most), "
    "or decompress the file first (e.g. `gdcmconv --raw`)"
)


def has_dicom_magic(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 preamble marker ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(DICOM_MAGIC_OFFSET + 4)
    except OSError:
        return False
    return head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def _decoder_available(ts) -> bool:
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(ts).is_available)
    except NotImplementedError:  # pydicom has no decoder at all for this syntax (video, ...)
        return False


def _pixels(path: Path, ds) -> np.ndarray:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        if ts is not None and ts.is_compressed:
            # pydicom lists what each plugin said (or which are missing), one per line
            lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
            said = _one_line(Exception("; ".join(lines))) if lines else ""
            if _decoder_available(ts):
                raise InputError(
                    f"compressed DICOM ({ts.name}) could not be decoded: the data is damaged or "
                    f"uses a variant the installed decoders do not support"
                    f"{f' (pydicom: {said})' if said else ''}", str(path)) from exc
            raise InputError(
                f"compressed DICOM ({ts.name}) cannot be decoded: no decoder is installed"
                f"{f' (pydicom: {said})' if said else ''}; " + DECODER_HINT, str(path)) from exc
        raise InputError(f"cannot decode DICOM pixel data ({_one_line(exc)})", str(path)) from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def decode_dicom(path: Path) -> DecodedFile:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    # force=True also reads files that lack the 128-byte preamble (old ACR-NEMA style).
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError("DICOM file has no pixel data (not an image)", str(path))
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise InputError("DICOM float pixel data is not supported", str(path))
    arr = _pixels(path, ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1))
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", arr.dtype.itemsize * 8)))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dtype = str(arr.dtype)
    notes: list[str] = []

    if samples > 1:
        # pydicom returns RGB for RGB and YBR data (it converts YBR by default).
        stack = arr if frames_n > 1 else arr[None]
        first = stack[0]
        same = np.array_equal(first[..., 0], first[..., 1]) and np.array_equal(first[..., 0],
                                                                               first[..., 2])
        notes.append("colour image with identical R, G, B channels: used as grayscale" if same
                     else "colour image converted to grayscale (ITU-R 601 luminance)")
        gray = [s[..., 0] if same else luminance(s) for s in stack]
        frames = [(frame_id(path, k if frames_n > 1 else None), g) for k, g in enumerate(gray)]
        return DecodedFile(str(path), "dicom", dtype, frames, (0.0, float(2**bits_stored - 1)),
                           physical=False, bit_depth=bits_stored, unit="level", notes=notes)

    if signed:
        stored = (-(2.0 ** (bits_stored - 1)), 2.0 ** (bits_stored - 1) - 1)
    else:
        stored = (0.0, 2.0**bits_stored - 1)
    values = apply_modality_lut(arr, ds)
    ends = np.asarray(apply_modality_lut(np.array(stored, dtype=np.float64), ds), dtype=np.float64)
    native = (float(ends.min()), float(ends.max()))
    if "RescaleType" in ds and str(ds.RescaleType).strip():
        unit = str(ds.RescaleType).strip()
    elif str(ds.get("Modality", "")).upper() == "CT" and "RescaleIntercept" in ds:
        unit = "HU"
    else:
        unit = "raw"
    stack = values if frames_n > 1 else values[None]
    frames = [(frame_id(path, k if frames_n > 1 else None), f) for k, f in enumerate(stack)]
    return DecodedFile(str(path), "dicom", dtype, frames, native, physical=True,
                       bit_depth=bits_stored, unit=unit, invert=photometric == "MONOCHROME1",
                       notes=notes)
