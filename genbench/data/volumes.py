"""Volumes for the CT and MRI presets: reading (NIfTI, DICOM series, label maps) and geometry.

Every reader returns a :class:`Volume` whose array is ``(slices, rows, cols)``:

* ``reorient=True`` (CT): the voxel grid is brought to the closest RAS+ orientation using the
  file's affine, then laid out radiologically: slice 0 is the most inferior, row 0 the most
  anterior, column 0 the patient's rightmost (the image's left shows the patient's right).
  This is the convention of ``genbench.io.nifti`` and of a radiology workstation.
* ``reorient=False`` (heart MRI): ACDC short-axis stacks are oblique, so the closest RAS+
  axes are meaningless; slices are taken along the third voxel axis and each slice is
  ``data[:, :, k].T`` (rows follow the second voxel axis, columns the first), which is the
  orientation pydicom's ``pixel_array`` had before conversion. (MONAI's ``LoadImage`` returns
  ``data`` itself, i.e. the transpose of pydicom's arrays.)

A DICOM series is turned into the same (i = column, j = row, k = slice) voxel array with an
RAS affine built from ImagePositionPatient / ImageOrientationPatient / PixelSpacing, so both
formats go through one orientation path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genbench.errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A (slices, rows, cols) float32 array with its voxel spacing in mm, same axis order."""

    data: np.ndarray
    spacing: tuple[float, float, float]
    source: str


def _layout(arr: np.ndarray, affine: np.ndarray | None, reorient: bool) -> tuple[np.ndarray, tuple]:
    """Voxel array (i, j, k) -> display layout (slices, rows, cols) and matching spacing."""
    import nibabel as nib

    zooms = (
        np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)) if affine is not None else np.ones(3)
    )
    if reorient and affine is not None:
        ornt = nib.orientations.io_orientation(affine)
        arr = nib.orientations.apply_orientation(arr, ornt)
        zooms = zooms[ornt[:, 0].astype(int)]
        # RAS+: flip R and A so that columns run right->left and rows anterior->posterior.
        arr = arr[::-1, ::-1, :]
    out = np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))
    return out, (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def _check_finite(arr: np.ndarray, source: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(f"{bad} voxel(s) are NaN or infinite", source)


def load_nifti(
    path: Path,
    *,
    reorient: bool = True,
    frame: int | None = None,
    label: bool = False,
    like_affine: np.ndarray | None = None,
) -> tuple[Volume, np.ndarray]:
    """Read a 3-D NIfTI (or one ``frame`` of a 4-D one). Returns the volume and the file's affine.

    ``like_affine`` reorients with another file's affine: label maps share their image's grid.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj)
    except FileNotFoundError:
        raise InputError("file not found", str(path)) from None
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise InputError(f"cannot read as NIfTI ({type(exc).__name__}: {exc})", str(path)) from None
    if arr.ndim == 4:
        if frame is None:
            if arr.shape[3] != 1:
                raise InputError(
                    f"4-D NIfTI with {arr.shape[3]} frames: choose frames explicitly", str(path)
                )
            frame = 0
        if not -arr.shape[3] <= frame < arr.shape[3]:
            raise InputError(
                f"frame {frame} out of range (the file has {arr.shape[3]} frames)", str(path)
            )
        arr = arr[..., frame]
    elif frame not in (None, 0):
        raise InputError(f"frame {frame} requested but the file is {arr.ndim}-D", str(path))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise InputError(f"expected a 3-D volume, got shape {arr.shape}", str(path))
    if label:
        if arr.dtype.kind == "f":
            _check_finite(arr, str(path))
        arr = np.rint(arr).astype(np.int16)
    else:
        arr = arr.astype(np.float32)
        _check_finite(arr, str(path))
    affine = np.asarray(img.affine if like_affine is None else like_affine, dtype=float)
    data, spacing = _layout(arr, affine, reorient)
    return Volume(data, spacing, str(path)), np.asarray(img.affine, dtype=float)


def nifti_shape(path: Path) -> tuple[int, ...]:
    import nibabel as nib

    try:
        return tuple(int(s) for s in nib.load(str(path)).shape)
    except Exception as exc:
        raise InputError(f"cannot read as NIfTI ({type(exc).__name__}: {exc})", str(path)) from None


def is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def load_dicom_series(files: list[Path], where: str) -> tuple[Volume, np.ndarray]:
    """Stack one CT series into HU, sorted along the slice normal; spacing must be regular.

    Returns the volume in display layout and the (i, j, k) voxel array's RAS affine, which a
    label map stored in the same geometry needs.
    """
    import pydicom

    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
        except Exception as exc:
            raise InputError(
                f"cannot read as DICOM ({type(exc).__name__}: {exc})", str(f)
            ) from None
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if tag not in ds:
                raise InputError(
                    f"DICOM slice lacks {tag}, so the series geometry is unknown", str(f)
                )
        try:
            pix = ds.pixel_array
        except Exception as exc:  # missing decoders raise RuntimeError
            raise InputError(
                f"cannot decode pixel data ({type(exc).__name__}: {exc})", str(f)
            ) from None
        # HU are physical values: the modality LUT applies; MONOCHROME1 only affects display.
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        inter = float(getattr(ds, "RescaleIntercept", 0.0))
        slices.append((f, ds, pix.astype(np.float32) * slope + inter))
    if not slices:
        raise InputError("no DICOM files", where)
    uids = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds, _ in slices}
    if len(uids) > 1:
        raise InputError(
            f"{len(uids)} different series in one folder; keep one series per patient", where
        )
    iop = np.asarray(slices[0][1].ImageOrientationPatient, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    for f, ds, pix in slices:
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=float), iop, atol=1e-4):
            raise InputError("slice orientation differs from the rest of the series", str(f))
        if pix.shape != slices[0][2].shape:
            raise InputError(f"slice shape {pix.shape} differs from {slices[0][2].shape}", str(f))
    pos = np.array(
        [np.asarray(ds.ImagePositionPatient, dtype=float) @ normal for _, ds, _ in slices]
    )
    order = np.argsort(pos, kind="stable")
    slices = [slices[i] for i in order]
    pos = pos[order]
    if len(slices) > 1:
        gaps = np.diff(pos)
        step = float(np.median(gaps))
        if step <= 1e-6:
            dup = slices[int(np.argmin(gaps)) + 1][0]
            raise InputError("two slices share one position (duplicate slice?)", str(dup))
        bad = np.flatnonzero(np.abs(gaps - step) > max(0.01 * step, 1e-3))
        if bad.size:
            f = slices[int(bad[0]) + 1][0]
            raise InputError(
                f"inconsistent slice spacing in the series: gap {gaps[bad[0]]:.3g} mm before this slice, "
                f"{step:.3g} mm elsewhere (missing or extra slices?)",
                str(f),
            )
    else:
        step = float(getattr(slices[0][1], "SliceThickness", 1.0) or 1.0)
    ps = [float(v) for v in slices[0][1].PixelSpacing]  # (between rows, between columns)
    origin = np.asarray(slices[0][1].ImagePositionPatient, dtype=float)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * ps[1]  # i: along a row, i.e. increasing column
    lps[:3, 1] = col_dir * ps[0]  # j: down the rows
    lps[:3, 2] = normal * step
    lps[:3, 3] = origin
    affine = LPS_TO_RAS @ lps
    voxels = np.stack([pix.T for _, _, pix in slices], axis=2)  # (i, j, k)
    data, spacing = _layout(voxels, affine, True)
    return Volume(data, spacing, where), affine


def load_mask_array(
    path: Path, affine: np.ndarray, image_voxel_shape: tuple[int, int, int]
) -> Volume:
    """A label map saved as .npy/.npz in the sorted DICOM series' (slice, row, col) order."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise InputError(f"expected one array in the .npz, found {z.files}", str(path))
                arr = z[z.files[0]]
        else:
            arr = np.load(path, allow_pickle=False)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"cannot read label array ({type(exc).__name__}: {exc})", str(path)
        ) from None
    if arr.ndim != 3:
        raise InputError(
            f"label array must be 3-D (slices, rows, cols), got shape {arr.shape}", str(path)
        )
    voxels = np.transpose(arr, (2, 1, 0))
    if voxels.shape != tuple(image_voxel_shape):
        raise InputError(
            f"label map shape {arr.shape} does not match its image "
            f"{(image_voxel_shape[2], image_voxel_shape[1], image_voxel_shape[0])} (slices, rows, cols)",
            str(path),
        )
    if arr.dtype.kind == "f":
        _check_finite(arr, str(path))
    data, spacing = _layout(np.rint(voxels).astype(np.int16), affine, True)
    return Volume(data, spacing, str(path))


def resample(
    vol: np.ndarray,
    spacing: tuple[float, float, float],
    target: tuple[float | None, float | None, float | None],
    *,
    labels: bool = False,
) -> np.ndarray:
    """Resample a (slices, rows, cols) array to ``target`` spacing (None keeps an axis as is).

    The field of view is preserved (voxel edges, not centres, stay aligned): trilinear for
    intensities, nearest neighbour for label maps.
    """
    shape = tuple(
        s if t is None else max(1, int(round(s * sp / t)))
        for s, sp, t in zip(vol.shape, spacing, target)
    )
    if shape == vol.shape:
        return vol
    x = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[None, None]
    if labels:
        y = F.interpolate(x, size=shape, mode="nearest-exact")
        return y[0, 0].numpy().astype(vol.dtype)
    y = F.interpolate(x, size=shape, mode="trilinear", align_corners=False)
    return y[0, 0].numpy()


def pad_crop(slices: np.ndarray, size: int, fill: float) -> np.ndarray:
    """Centre-pad (with ``fill``) or centre-crop the last two axes to ``size`` x ``size``.

    Unlike MONAI's SpatialPad this also crops, and the fill is the modality's background.
    """
    n, h, w = slices.shape
    out = np.full((n, size, size), fill, dtype=slices.dtype)
    sh, sw = min(h, size), min(w, size)
    y0, x0 = (h - sh) // 2, (w - sw) // 2
    Y0, X0 = (size - sh) // 2, (size - sw) // 2
    out[:, Y0 : Y0 + sh, X0 : X0 + sw] = slices[:, y0 : y0 + sh, x0 : x0 + sw]
    return out


def resize_stack(slices: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize of (n, H, W) to (n, size, size)."""
    if slices.shape[1:] == (size, size):
        return slices.astype(np.float32, copy=False)
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    antialias = size < max(slices.shape[1:])
    y = F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias
    )
    return y[:, 0].numpy()
