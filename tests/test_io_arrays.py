"""NPY/NPZ stacks: shapes, frame ids, and the documented value-range rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from io_helpers import expected_canonical

from genbench.errors import InputError, UsageError
from genbench.io import read_image_file, read_image_folder


def test_npy_stack_frame_ids_and_uint16_range(tmp_path):
    arr = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4) * 1000
    np.save(tmp_path / "s.npy", arr)
    s = read_image_folder(tmp_path)
    assert s.sources == [f"{tmp_path / 's.npy'}#0", f"{tmp_path / 's.npy'}#1"]
    np.testing.assert_array_equal(s.images[:, 0].numpy(), expected_canonical(arr, 0, 65535))
    assert s.meta["format"] == "npy" and s.meta["dtype"] == "uint16"


def test_npy_single_2d_and_n1hw(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((5, 6), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((1, 1, 5, 6), np.uint8))
    s = read_image_folder(tmp_path)
    assert s.sources == [str(tmp_path / "a.npy"), f"{tmp_path / 'b.npy'}#0"]
    assert s.images.shape == (2, 1, 5, 6) and torch.all(s.images == -1.0)


@pytest.mark.parametrize("dtype,lo,hi", [("uint8", 0, 255), ("int16", -32768, 32767),
                                         ("int8", -128, 127)])
def test_integer_dtype_ranges(tmp_path, dtype, lo, hi):
    info = np.iinfo(dtype)
    arr = np.array([[info.min, 0], [1, info.max]], dtype=dtype)
    np.save(tmp_path / "x.npy", arr)
    [(_, img)] = read_image_file(tmp_path / "x.npy")
    np.testing.assert_array_equal(img, expected_canonical(arr, lo, hi))
    assert img.min() == -1.0 and img.max() == 1.0


def test_float_detection_rules(tmp_path):
    unit = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    np.save(tmp_path / "u.npy", unit)
    [(_, img)] = read_image_file(tmp_path / "u.npy")
    np.testing.assert_allclose(img, unit * 2 - 1, atol=1e-7)  # [0,1] -> [-1,1]
    sym = np.array([[-0.5, 0.0], [0.25, 1.0]], np.float32)
    np.save(tmp_path / "s.npy", sym)
    [(_, img)] = read_image_file(tmp_path / "s.npy")
    np.testing.assert_array_equal(img, sym)  # already canonical: taken as is


def test_float_detection_is_one_decision_per_set(tmp_path):
    # a file that happens to be non-negative must not be stretched when others are in [-1, 1]
    np.save(tmp_path / "a.npy", np.full((2, 2), 0.5, np.float32))
    np.save(tmp_path / "b.npy", np.full((2, 2), -0.5, np.float32))
    s = read_image_folder(tmp_path)
    assert s.images[0].unique().tolist() == [0.5]
    assert s.images[1].unique().tolist() == [-0.5]


def test_float_out_of_range_and_wide_int_need_value_range(tmp_path):
    np.save(tmp_path / "hu.npy", np.array([[-1000.0, 40.0]], np.float32))
    with pytest.raises(InputError, match=r"hu\.npy.*span \[-1000, 40\].*--value-range"):
        read_image_file(tmp_path / "hu.npy")
    [(_, img)] = read_image_file(tmp_path / "hu.npy", value_range=(-1000, 1000))
    np.testing.assert_allclose(img, [[-1.0, 0.04]], atol=1e-6)
    [(_, img)] = read_image_file(tmp_path / "hu.npy", hu_window=(-100, 100))
    np.testing.assert_allclose(img, [[-1.0, 0.4]], atol=1e-6)  # clipped to the window
    np.save(tmp_path / "i64.npy", np.array([[0, 255]], np.int64))
    with pytest.raises(InputError, match=r"i64\.npy: int64 values have no implied range"):
        read_image_file(tmp_path / "i64.npy")


def test_declared_range_violation_is_an_error(tmp_path):
    np.save(tmp_path / "v.npy", np.array([[0.0, 300.0]], np.float32))
    with pytest.raises(InputError, match=r"v\.npy: values span \[0, 300\], outside the declared"):
        read_image_file(tmp_path / "v.npy", value_range=(0, 255))
    with pytest.raises(UsageError):
        read_image_file(tmp_path / "v.npy", value_range=(5, 1))


def test_npz_single_and_named_arrays(tmp_path):
    np.savez(tmp_path / "one.npz", whatever=np.zeros((2, 3, 3), np.uint8))
    np.savez(tmp_path / "two.npz", images=np.full((3, 3), 255, np.uint8), labels=np.zeros(3))
    s = read_image_folder(tmp_path)
    assert s.sources == [f"{tmp_path / 'one.npz'}#0", f"{tmp_path / 'one.npz'}#1",
                         str(tmp_path / "two.npz")]
    assert s.images[2].unique().tolist() == [1.0]
    np.savez(tmp_path / "bad.npz", a=np.zeros((3, 3)), b=np.zeros((3, 3)))
    with pytest.raises(InputError, match=r"bad\.npz: .*several arrays \(a, b\)"):
        read_image_file(tmp_path / "bad.npz")


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["uint8", "uint16", "int16"]), st.integers(0, 2**31 - 1))
def test_integer_mapping_is_exact_and_invertible(dtype, seed):
    import tempfile
    from pathlib import Path

    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    arr = rng.integers(info.min, int(info.max) + 1, size=(3, 5), dtype=dtype)
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "x.npy", arr)
        s = read_image_folder(d)
    np.testing.assert_array_equal(s.images[0, 0].numpy(),
                                  expected_canonical(arr, info.min, info.max))
    np.testing.assert_allclose(s.mapping.to_raw(s.images[0, 0].numpy().astype(np.float64)), arr,
                               atol=(info.max - info.min) * 1e-7)
