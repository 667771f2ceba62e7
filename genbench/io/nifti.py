"""NIfTI decoder (nibabel): a 2-D image, or a 3-D volume split into axial slices.

Orientation (the convention, fixed and tested):
1. The voxel array is reoriented to the closest canonical RAS+ orientation using the file's
   affine (axis 0 towards patient Right, axis 1 towards Anterior, axis 2 towards Superior).
2. Axial slice ``k`` is ``data[:, :, k]`` of that array, k counting from inferior to superior;
   its source id is ``path#k``.
3. The slice is transposed and flipped into the radiological view: row 0 is the most anterior
   row (top of the image = anterior) and column 0 is the patient's rightmost column (left side of
   the image = patient's right), as on a radiology workstation looking up from the feet.

A file whose affine is the identity is thus shown as ``data[:, :, k].T[::-1, ::-1]``.
Values keep the file's units: the header's scl_slope/scl_inter are applied. Integer volumes up to
16 bits map their dtype range (through the scaling) to [-1, 1]; float volumes need a range
(detected when already in [0, 1] or [-1, 1], else ``hu_window`` or ``value_range``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genbench.errors import InputError
from genbench.io.decoded import DecodedFile, frame_id, integer_dtype_range


def radiological_slice(ras_slice: np.ndarray) -> np.ndarray:
    """(X=right, Y=anterior) slice of a RAS+ volume -> image rows anterior->posterior, cols R->L."""
    return ras_slice.T[::-1, ::-1]


def decode_nifti(path: Path) -> DecodedFile:
    import nibabel as nib

    try:
        img = nib.load(path)
    except nib.filebasedimages.ImageFileError as exc:
        raise InputError("not a readable NIfTI file (header missing, damaged or truncated)",
                         str(path)) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError("not a NIfTI image", str(path))
    proxy = img.dataobj
    dtype = np.dtype(img.get_data_dtype())
    slope, inter = 1.0, 0.0
    if hasattr(proxy, "get_unscaled"):
        raw = np.asarray(proxy.get_unscaled())
        slope = float(getattr(proxy, "slope", 1.0))
        inter = float(getattr(proxy, "inter", 0.0))
    else:
        raw = np.asarray(proxy)
    shape = raw.shape
    while raw.ndim > 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim == 2:
        raw = raw[:, :, None]
        single = True
    elif raw.ndim == 3:
        single = False
    else:
        raise InputError(f"{raw.ndim}-D NIfTI (shape {shape}) is not supported: pass 2-D images "
                         "or 3-D volumes (split 4-D series into 3-D files first)", str(path))
    ornt = nib.orientations.io_orientation(img.affine)
    ras = nib.orientations.apply_orientation(raw, ornt)
    if raw.dtype.kind == "c" or raw.dtype.kind not in "biuf":
        raise InputError(f"NIfTI data of dtype {raw.dtype} is not an image", str(path))

    scaled = slope != 1.0 or inter != 0.0
    native = integer_dtype_range(raw.dtype)
    if native is not None and scaled:
        ends = sorted((native[0] * slope + inter, native[1] * slope + inter))
        native = (ends[0], ends[1])

    frames = []
    for k in range(ras.shape[2]):
        sl = radiological_slice(ras[:, :, k])
        if scaled:
            sl = sl.astype(np.float64) * slope + inter
        frames.append((frame_id(path, None if single else k), np.ascontiguousarray(sl)))
    return DecodedFile(str(path), "nifti", str(dtype), frames, native, physical=True,
                       bit_depth=dtype.itemsize * 8)
