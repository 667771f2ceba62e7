"""PNG/TIFF reading by true bit depth, colour handling, and the PNG writers' exact round trip."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from io_helpers import expected_canonical, png_bytes_16bit_rgb, write_png
from PIL import Image

from genbench.errors import InputError
from genbench.imageset import quantize_uint8
from genbench.io import (
    ImageConversionWarning,
    read_image_file,
    read_image_folder,
    write_npz,
    write_png_folder,
)

RAMP16 = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)  # 1024 distinct levels


def test_png_16bit_ramp_round_trips_without_saturation(tmp_path):
    write_png(tmp_path / "ramp.png", RAMP16)
    assert Image.open(tmp_path / "ramp.png").mode.startswith("I;16")  # really a 16-bit file
    s = read_image_folder(tmp_path)
    got = s.images[0, 0].numpy()
    np.testing.assert_array_equal(got, expected_canonical(RAMP16, 0, 65535))
    # no saturation: every distinct input level stays distinct, and only the true max is at 1
    assert len(np.unique(got)) == len(np.unique(RAMP16))
    assert (got == 1.0).sum() == (RAMP16 == 65535).sum()
    assert s.meta["bit_depth"] == 16 and s.meta["dtype"] == "uint16"
    assert s.mapping.unit == "level"
    np.testing.assert_allclose(s.mapping.to_raw(got), RAMP16, atol=1e-2)


def test_png_8bit(tmp_path):
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    write_png(tmp_path / "a.png", arr)
    [(sid, img)] = read_image_file(tmp_path / "a.png")
    assert sid == str(tmp_path / "a.png")
    np.testing.assert_array_equal(img, expected_canonical(arr, 0, 255))
    assert img.dtype == np.float32 and img.min() == -1.0 and img.max() == 1.0


def test_png_1bit(tmp_path):
    arr = np.zeros((8, 8), dtype=bool)
    arr[2:5, 3] = True
    Image.fromarray(arr).save(tmp_path / "m.png")
    [(_, img)] = read_image_file(tmp_path / "m.png")
    np.testing.assert_array_equal(img, np.where(arr, 1.0, -1.0).astype(np.float32))


def test_rgb_png_converted_to_luminance_with_warning_naming_file(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    write_png(tmp_path / "colour.png", rgb)
    with pytest.warns(ImageConversionWarning, match="colour.png") as rec:
        s = read_image_folder(tmp_path)
    assert "luminance" in str(rec[0].message)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(s.images[0, 0].numpy(), luma / 255 * 2 - 1, atol=1e-6)


def test_rgba_gray_channels_exact_and_alpha_ignored(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgba = np.stack([gray, gray, gray, np.full_like(gray, 7)], -1)
    write_png(tmp_path / "g.png", rgba)
    with pytest.warns(ImageConversionWarning, match="identical"):
        [(_, img)] = read_image_file(tmp_path / "g.png")
    np.testing.assert_array_equal(img, expected_canonical(gray, 0, 255))


def test_16bit_rgb_png_is_flagged(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint16)
    rgb[..., 0] = 65535
    (tmp_path / "rgb16.png").write_bytes(png_bytes_16bit_rgb(rgb))
    with pytest.warns(ImageConversionWarning) as rec:
        [(_, img)] = read_image_file(tmp_path / "rgb16.png")
    messages = " | ".join(str(w.message) for w in rec)
    assert "8-bit precision" in messages and "luminance" in messages and "rgb16.png" in messages
    np.testing.assert_allclose(img, 0.299 * 2 - 1, atol=1e-6)


def test_tiff_16bit_and_multipage(tmp_path):
    tifffile.imwrite(tmp_path / "one.tif", RAMP16)
    stack = np.stack([RAMP16, RAMP16[::-1]])
    tifffile.imwrite(tmp_path / "stack.tiff", stack)
    s = read_image_folder(tmp_path)
    assert s.sources == [str(tmp_path / "one.tif"), f"{tmp_path / 'stack.tiff'}#0",
                         f"{tmp_path / 'stack.tiff'}#1"]
    exp = expected_canonical(RAMP16, 0, 65535)
    np.testing.assert_array_equal(s.images[0, 0].numpy(), exp)
    np.testing.assert_array_equal(s.images[2, 0].numpy(), exp[::-1])


def test_tiff_min_is_white_is_inverted(tmp_path):
    arr = np.array([[0, 255], [128, 64]], dtype=np.uint8)
    tifffile.imwrite(tmp_path / "w.tif", arr, photometric="miniswhite")
    s = read_image_folder(tmp_path)
    np.testing.assert_array_equal(s.images[0, 0].numpy(), -expected_canonical(arr, 0, 255))
    # the mapping runs from white=0 back to the stored values
    np.testing.assert_allclose(s.mapping.to_raw(s.images[0, 0].numpy()), arr, atol=1e-4)


def test_float_tiff_needs_a_range(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.full((4, 4), 300.0, dtype=np.float32))
    with pytest.raises(InputError, match=r"f\.tif.*--value-range"):
        read_image_folder(tmp_path)
    s = read_image_folder(tmp_path, value_range=(0, 600))
    assert torch.all(s.images == 0.0)


def test_write_png_folder_8_and_16_bit_exact(tmp_path):
    x = torch.linspace(-1, 1, 2 * 16 * 16).reshape(2, 1, 16, 16)
    paths = write_png_folder(x, tmp_path / "p8")
    assert [p.name for p in paths] == ["img_00000.png", "img_00001.png"]
    back8 = read_image_folder(tmp_path / "p8").images
    torch.testing.assert_close(back8, quantize_uint8(x).float() / 255 * 2 - 1, rtol=0, atol=1e-7)
    write_png_folder(x, tmp_path / "p16", bit_depth=16)
    back16 = read_image_folder(tmp_path / "p16").images
    assert (back16 - x).abs().max() <= 1 / 65535 + 1e-7


def test_write_png_refuses_to_overwrite_and_nan(tmp_path):
    x = torch.zeros(1, 1, 4, 4)
    write_png_folder(x, tmp_path)
    before = (tmp_path / "img_00000.png").read_bytes()
    with pytest.raises(InputError, match="overwritten"):
        write_png_folder(x + 0.5, tmp_path)
    assert (tmp_path / "img_00000.png").read_bytes() == before
    write_png_folder(x + 0.5, tmp_path, overwrite=True)
    assert (tmp_path / "img_00000.png").read_bytes() != before
    with pytest.raises(InputError, match="NaN"):
        write_png_folder(torch.full((1, 1, 4, 4), float("nan")), tmp_path / "n")
    assert not (tmp_path / "n").exists()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=12, max_size=12),
       st.sampled_from([8, 16]))
def test_png_writer_reader_round_trip_property(values, bits):
    raw = np.array(values, dtype=np.uint16).reshape(3, 4)
    if bits == 8:
        raw = (raw >> 8).astype(np.uint8)  # 8-bit levels drawn from the same 16-bit draws
    maxv = 2**bits - 1
    canonical = torch.from_numpy(expected_canonical(raw, 0, maxv))[None, None]
    with tempfile.TemporaryDirectory() as d:
        write_png_folder(canonical, d, bit_depth=bits)
        with Image.open(Path(d) / "img_00000.png") as im:
            np.testing.assert_array_equal(np.asarray(im), raw)  # the exact stored levels
        back = read_image_folder(d).images
    torch.testing.assert_close(back, canonical, rtol=0, atol=0)


def test_npz_writer_round_trip(tmp_path):
    x = torch.rand(3, 1, 8, 8) * 0.5  # all non-negative: the stored range must win
    write_npz(x, tmp_path / "s.npz", note="hello")
    s = read_image_folder(tmp_path / "s.npz")
    torch.testing.assert_close(s.images, x, rtol=0, atol=0)
    assert s.sources[0].endswith("s.npz#0")
    with pytest.raises(InputError, match="exists"):
        write_npz(x, tmp_path / "s.npz")
