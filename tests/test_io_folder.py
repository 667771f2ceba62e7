"""Folder reading: order, sizes, resize, and every kind of bad input (error or skip_bad)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from io_helpers import write_dicom, write_nifti, write_png

from genbench.errors import InputError
from genbench.io import read_image_file, read_image_folder, resize_image


def _gray(value: int, h: int = 8, w: int = 8) -> np.ndarray:
    return np.full((h, w), value, dtype=np.uint8)


def test_recursive_natural_order_and_hidden_files(tmp_path):
    for name, v in [("img10.png", 10), ("img2.png", 2), ("b/img1.png", 101), ("a/z.png", 100),
                    (".hidden.png", 1), (".cache/x.png", 1)]:
        write_png(tmp_path / name, _gray(v))
    s = read_image_folder(tmp_path)
    rel = [Path(p).relative_to(tmp_path).as_posix() for p in s.sources]
    assert rel == ["a/z.png", "b/img1.png", "img2.png", "img10.png"]
    assert [round((float(x) + 1) * 127.5) for x in s.images[:, 0, 0, 0]] == [100, 101, 2, 10]
    assert s.skipped == []


@settings(max_examples=15, deadline=None)
@given(st.permutations(list(range(6))))
def test_order_is_independent_of_creation_order(perm):
    names = ["s1.png", "s10.png", "s2.png", "a/s1.png", "s01.png", "B.png"]
    with tempfile.TemporaryDirectory() as d:
        for i in perm:  # create the files in a random order
            write_png(Path(d) / names[i], _gray(i))
        first = read_image_folder(d)
        second = read_image_folder(d)
        rel = [Path(p).relative_to(d).as_posix() for p in first.sources]
    assert rel == ["B.png", "a/s1.png", "s01.png", "s1.png", "s2.png", "s10.png"]
    assert first.sources == second.sources and first.sha256() == second.sha256()


def test_mixed_sizes_error_lists_sizes_counts_and_examples(tmp_path):
    write_png(tmp_path / "a.png", _gray(0, 8, 8))
    write_png(tmp_path / "b.png", _gray(0, 8, 8))
    write_png(tmp_path / "c.png", _gray(0, 16, 12))
    with pytest.raises(InputError) as info:
        read_image_folder(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path}: images have different sizes")
    assert f"8x8 (2 images, e.g. {tmp_path / 'a.png'})" in msg
    assert f"16x12 (1 image, e.g. {tmp_path / 'c.png'})" in msg
    assert "--resize" in msg


def test_resize_bilinear_antialiased_and_recorded(tmp_path):
    big = np.kron(np.array([[0, 255], [255, 0]], np.uint8), np.ones((8, 8), np.uint8))
    write_png(tmp_path / "big.png", big)  # 16x16
    write_png(tmp_path / "small.png", _gray(255, 4, 4))
    s = read_image_folder(tmp_path, resize=4)
    assert s.images.shape == (2, 1, 4, 4)
    assert s.meta["resize"]["size"] == 4 and s.meta["resize"]["n_resized"] == 1
    assert s.meta["resize"]["original_sizes"] == {"16x16": 1, "4x4": 1}
    # reference: torch's antialiased bilinear on the canonical image
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(big / 127.5 - 1).float()[None, None], size=(4, 4), mode="bilinear",
        antialias=True, align_corners=False)
    torch.testing.assert_close(s.images[0:1], ref, atol=1e-6, rtol=0)
    # antialiasing: averaging over the quadrant blocks keeps them pure at 4x4
    assert s.images[0, 0, 0, 0] == -1.0 and s.images[0, 0, 0, 3] == 1.0
    assert torch.all(s.images[1] == 1.0)
    assert resize_image(np.zeros((4, 4), np.float32), 4).shape == (4, 4)


def test_single_file_path(tmp_path):
    write_png(tmp_path / "x.png", _gray(255))
    s = read_image_folder(tmp_path / "x.png")
    assert s.sources == [str(tmp_path / "x.png")] and s.meta["n_files"] == 1


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(InputError, match=r"nope: no such file or folder"):
        read_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: folder contains no image files"):
        read_image_folder(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"text: folder contains no image files \(1 other"):
        read_image_folder(tmp_path / "text")


def test_non_image_files_are_skipped_and_listed(tmp_path):
    write_png(tmp_path / "a.png", _gray(0))
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / "labels.csv").write_text("a,b")
    s = read_image_folder(tmp_path)
    assert len(s) == 1
    assert s.skipped == [(str(tmp_path / "labels.csv"), "not an image file"),
                         (str(tmp_path / "readme.txt"), "not an image file")]
    with pytest.raises(InputError, match=r"readme\.txt: not an image file"):
        read_image_folder(tmp_path / "readme.txt")


def _bad_files(folder: Path) -> dict[str, str]:
    """name -> regex of the expected one-line problem description."""
    noise = np.random.default_rng(0).integers(0, 256, size=(8, 8), dtype=np.uint8)
    write_png(folder / "good.png", noise)  # noise: half the file cuts into the pixel data
    full = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(full[: len(full) // 2])
    (folder / "fake.png").write_bytes(b"this is text, not a PNG")
    arr = np.zeros((8, 8), np.float32)
    arr[0, 0] = np.inf
    np.save(folder / "inf.npy", arr)
    arr[0, 0] = np.nan
    np.save(folder / "nan.npy", arr)
    (folder / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    write_dicom(folder / "jls.dcm", np.zeros((8, 8), np.uint16), compressed=True)
    write_dicom(folder / "full.dcm", np.zeros((32, 32), np.uint16))
    dcm = (folder / "full.dcm").read_bytes()
    (folder / "full.dcm").unlink()
    (folder / "truncated.dcm").write_bytes(dcm[:-1000])
    write_nifti(folder / "full.nii.gz", np.random.default_rng(1).random((32, 32, 4)))
    nii = (folder / "full.nii.gz").read_bytes()
    (folder / "full.nii.gz").unlink()
    (folder / "truncated.nii.gz").write_bytes(nii[: len(nii) // 2])
    return {
        "truncated.png": r"(cannot read|not a readable) PNG file.*truncated",
        "fake.png": r"not a readable PNG file \(unrecognised content",
        "inf.npy": r"contains 0 NaN and 1 Inf values",
        "nan.npy": r"contains 1 NaN and 0 Inf values",
        "broken.npy": r"cannot read NPY file",
        "jls.dcm": r"compressed DICOM \(JPEG-LS",
        "truncated.dcm": r"cannot read DICOM file: .*pixel data is less than expected",
        "truncated.nii.gz": r"cannot read NIfTI file: .*ended before",
    }


def test_each_bad_input_is_one_line_naming_the_file(tmp_path):
    expected = _bad_files(tmp_path)
    for name, pattern in expected.items():
        with pytest.raises(InputError, match=pattern) as info:
            read_image_file(tmp_path / name)
        msg = str(info.value)
        assert msg.startswith(f"{tmp_path / name}: "), msg
        assert "\n" not in msg and "Traceback" not in msg
        assert msg.count(str(tmp_path / name)) == 1, msg  # named once, not echoed by the library
    # in a folder the first bad file in reading order stops the read
    with pytest.raises(InputError, match=r"broken\.npy: "):
        read_image_folder(tmp_path)


def test_skip_bad_records_every_bad_file(tmp_path):
    expected = _bad_files(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    s = read_image_folder(tmp_path, skip_bad=True)
    assert s.sources == [str(tmp_path / "good.png")]
    reasons = dict(s.skipped)
    assert reasons[str(tmp_path / "notes.txt")] == "not an image file"
    for name, pattern in expected.items():
        reason = reasons[str(tmp_path / name)]
        assert re.search(pattern, reason), (name, reason)
        assert not reason.startswith(str(tmp_path))  # the path is the first field, not repeated
    assert len(s.skipped) == len(expected) + 1


def test_skip_bad_with_nothing_left(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(InputError, match=r"no readable images found \(1 skipped: .*x\.png"):
        read_image_folder(tmp_path, skip_bad=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    write_png(tmp_path / "locked.png", _gray(0))
    os.chmod(tmp_path / "locked.png", 0)
    try:
        with pytest.raises(InputError, match=r"locked\.png: cannot read PNG file"):
            read_image_folder(tmp_path)
    finally:
        os.chmod(tmp_path / "locked.png", 0o644)


def test_meta_and_mixed_mappings(tmp_path):
    write_png(tmp_path / "a8.png", _gray(255))
    write_png(tmp_path / "b16.png", np.full((8, 8), 65535, np.uint16))
    s = read_image_folder(tmp_path, progress=True)
    assert torch.all(s.images == 1.0)  # each scaled by its own bit depth
    assert s.meta["bit_depth"] == "mixed" and s.meta["mapping"] == "per file (mixed)"
    assert s.mapping.unit == "canonical"
    assert s.meta["files_by_format"] == {"png uint16 16-bit": 1, "png uint8 8-bit": 1}


def test_os_error_from_library_becomes_input_error(tmp_path, monkeypatch):
    # root can read any file, so simulate the permission error where the library would raise it
    import PIL.Image

    write_png(tmp_path / "locked.png", _gray(0))

    def denied(fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(PIL.Image, "open", denied)
    with pytest.raises(InputError) as info:
        read_image_folder(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'locked.png'}: cannot read PNG file: ")
    assert "Permission denied" in str(info.value)
