"""Builders for the small image files the I/O tests write themselves (no downloaded data)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np


def write_png(path: Path, arr: np.ndarray) -> Path:
    """Grayscale (uint8 -> 8-bit, uint16 -> 16-bit) or RGB(A) uint8 PNG through Pillow."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")
    return path


def png_bytes_16bit_rgb(rgb: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): filter 0 on every row."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].astype(">u2").tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    slope: float | None = None,
    intercept: float | None = None,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    modality: str = "CT",
    compressed: bool | str = False,
    preamble: bool = True,
) -> Path:
    """An uncompressed little-endian DICOM (or, with ``compressed``, a JPEG-LS one with junk data;
    a transfer syntax UID string instead of ``True`` names another compressed syntax).

    ``pixels``: (H, W) or (F, H, W) of uint8/uint16/int16; RGB as (H, W, 3) uint8.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        CTImageStorage,
        ExplicitVRLittleEndian,
        JPEGLSLossless,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    rgb = pixels.ndim == 3 and pixels.shape[-1] == 3 and photometric == "RGB"
    sop = CTImageStorage if modality == "CT" else SecondaryCaptureImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = (compressed if isinstance(compressed, str) else JPEGLSLossless) \
        if compressed else ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128 if preamble else None)
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    frames = pixels.shape[0] if (pixels.ndim == 3 and not rgb) else 1
    h, w = (pixels.shape[1:3] if frames > 1 or (pixels.ndim == 3 and not rgb)
            else pixels.shape[:2])
    ds.Rows, ds.Columns = int(h), int(w)
    if pixels.ndim == 3 and not rgb:
        ds.NumberOfFrames = int(pixels.shape[0])
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    alloc = pixels.dtype.itemsize * 8
    ds.BitsAllocated = alloc
    ds.BitsStored = bits_stored or alloc
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if compressed:
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 32])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OW" if alloc > 8 else "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False, implicit_vr=False, little_endian=True)
        path.write_bytes(buf.getvalue())
    return path


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None,
                slope: float | None = None, inter: float | None = None) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter or 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def expected_canonical(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The documented mapping [lo, hi] -> [-1, 1] computed independently (float64, then float32)."""
    return (2.0 * (values.astype(np.float64) - lo) / (hi - lo) - 1.0).astype(np.float32)
