"""NIfTI: 2-D images, 3-D volumes split into axial slices in the documented radiological view."""

from __future__ import annotations

import numpy as np
import pytest
from io_helpers import expected_canonical, write_nifti

from genbench.errors import InputError
from genbench.io import read_image_file, read_image_folder

X, Y, Z = 6, 5, 4  # distinct sizes so that a transposition cannot go unnoticed


def _volume_with_marker(i: int, j: int, k: int) -> np.ndarray:
    vol = np.zeros((X, Y, Z), dtype=np.int16)
    vol[i, j, k] = 1000
    return vol


def _marker_position(img: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(np.argmax(img), img.shape)
    return int(r), int(c)


@pytest.mark.parametrize(
    "affine_diag,marker,slice_index",
    [
        # RAS+ storage: the rightmost (i=X-1), most anterior (j=Y-1) voxel of slice k=2
        ((1, 1, 1), (X - 1, Y - 1, 2), 2),
        # LPS storage (as DICOM-derived arrays often are): i grows to the Left, j to Posterior,
        # so the right-anterior corner is i=0, j=0
        ((-1, -1, 1), (0, 0, 2), 2),
        # slices stored superior -> inferior: stored k=0 is the most superior, last in our order
        ((1, 1, -1), (X - 1, Y - 1, 0), Z - 1),
    ],
)
def test_axial_split_marker_at_right_anterior_corner(tmp_path, affine_diag, marker, slice_index):
    affine = np.diag([*affine_diag, 1.0])
    write_nifti(tmp_path / "vol.nii.gz", _volume_with_marker(*marker), affine)
    s = read_image_folder(tmp_path)
    assert len(s) == Z
    assert s.sources == [f"{tmp_path / 'vol.nii.gz'}#{k}" for k in range(Z)]
    # each slice is rows = anterior->posterior (Y), columns = patient right->left (X)
    assert s.images.shape == (Z, 1, Y, X)
    hot = [k for k in range(Z) if s.images[k].max() > s.images[k].min()]
    assert hot == [slice_index]
    # radiological view: top row = anterior, left column = patient's right
    assert _marker_position(s.images[slice_index, 0].numpy()) == (0, 0)


def test_slice_content_equals_transposed_flipped_data(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.integers(-1000, 2000, size=(X, Y, Z)).astype(np.int16)
    write_nifti(tmp_path / "v.nii", vol)
    s = read_image_folder(tmp_path, hu_window=(-1024, 3012))
    for k in range(Z):
        expected = expected_canonical(vol[:, :, k].T[::-1, ::-1], -1024, 3012)
        np.testing.assert_allclose(s.images[k, 0].numpy(), expected, atol=1e-6)
    assert s.mapping.unit == "HU"


def test_2d_nifti_and_scaling(tmp_path):
    img2d = np.arange(X * Y, dtype=np.int16).reshape(X, Y)
    write_nifti(tmp_path / "a.nii.gz", img2d, slope=2.0, inter=-10.0)
    [(sid, img)] = read_image_file(tmp_path / "a.nii.gz")
    assert sid == str(tmp_path / "a.nii.gz")  # a single image: no #k suffix
    lo, hi = -32768 * 2.0 - 10.0, 32767 * 2.0 - 10.0
    expected = expected_canonical(img2d.T[::-1, ::-1] * 2.0 - 10.0, lo, hi)
    np.testing.assert_allclose(img, expected, atol=1e-6)
    [(_, win)] = read_image_file(tmp_path / "a.nii.gz", hu_window=(-10, 48))
    np.testing.assert_allclose(
        win, expected_canonical(img2d.T[::-1, ::-1] * 2.0 - 10.0, -10, 48).clip(-1, 1), atol=1e-6)


def test_float_volume_needs_range_and_4d_refused(tmp_path):
    write_nifti(tmp_path / "mr.nii", np.full((3, 3, 2), 500.0, np.float32))
    with pytest.raises(InputError, match=r"mr\.nii: float values span \[500, 500\]"):
        read_image_folder(tmp_path)
    s = read_image_folder(tmp_path, value_range=(0, 1000))
    assert s.images.unique().tolist() == [0.0]
    write_nifti(tmp_path / "cine.nii", np.zeros((3, 3, 2, 5), np.int16))
    with pytest.raises(InputError, match=r"cine\.nii: 4-D NIfTI"):
        read_image_file(tmp_path / "cine.nii")


def test_nan_in_volume(tmp_path):
    vol = np.zeros((3, 3, 2), np.float32)
    vol[1, 1, 1] = np.nan
    write_nifti(tmp_path / "n.nii", vol)
    with pytest.raises(InputError, match=r"n\.nii: image #1 contains 1 NaN and 0 Inf"):
        read_image_file(tmp_path / "n.nii")
