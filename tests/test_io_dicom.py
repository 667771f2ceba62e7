"""DICOM: modality rescale, stored-bit range, MONOCHROME1, HU window, compressed transfer syntaxes."""

from __future__ import annotations

import numpy as np
import pytest
from io_helpers import expected_canonical, write_dicom

from genbench.errors import InputError
from genbench.io import ImageConversionWarning, read_image_file, read_image_folder

STORED = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 273)  # 0..4095: 12-bit


def test_rescale_slope_intercept_and_stored_bit_range(tmp_path):
    write_dicom(tmp_path / "ct.dcm", STORED, slope=2.0, intercept=-1024.0, bits_stored=12)
    s = read_image_folder(tmp_path)
    hu = STORED * 2.0 - 1024.0
    lo, hi = 0 * 2.0 - 1024.0, 4095 * 2.0 - 1024.0  # the 12-bit range through the rescale
    np.testing.assert_allclose(s.images[0, 0].numpy(), expected_canonical(hu, lo, hi), atol=1e-6)
    assert s.mapping.unit == "HU"
    np.testing.assert_allclose(s.mapping.to_raw(s.images[0, 0].numpy().astype(np.float64)), hu,
                               atol=1e-3)
    assert s.meta["format"] == "dicom" and s.meta["bit_depth"] == 12


def test_hu_window_maps_and_clips(tmp_path):
    write_dicom(tmp_path / "ct.dcm", STORED, slope=1.0, intercept=-1024.0, bits_stored=12)
    [(_, img)] = read_image_file(tmp_path / "ct.dcm", hu_window=(-1024, 3012))
    hu = STORED.astype(np.float64) - 1024.0
    expected = np.clip(expected_canonical(hu, -1024, 3012), -1, 1)
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert img.max() == 1.0  # 3071 HU is above the window: clipped, not wrapped
    narrow = read_image_folder(tmp_path, hu_window=(-100, 100))
    assert narrow.mapping.unit == "HU"
    assert narrow.mapping.to_raw(-1.0) == -100 and narrow.mapping.to_raw(1.0) == 100
    np.testing.assert_allclose(narrow.images[0, 0].numpy(),
                               np.clip(expected_canonical(hu, -100, 100), -1, 1), atol=1e-6)


def test_signed_pixels(tmp_path):
    px = np.array([[-2000, -1], [0, 3000]], dtype=np.int16)
    write_dicom(tmp_path / "s.dcm", px, slope=1.0, intercept=0.0, bits_stored=16)
    [(_, img)] = read_image_file(tmp_path / "s.dcm")
    np.testing.assert_allclose(img, expected_canonical(px, -32768, 32767), atol=1e-6)


def test_monochrome1_is_inverted(tmp_path):
    px = np.array([[0, 1000], [3000, 4095]], dtype=np.uint16)
    write_dicom(tmp_path / "m2.dcm", px, bits_stored=12, modality="DX")
    write_dicom(tmp_path / "m1.dcm", px, bits_stored=12, modality="DX",
                photometric="MONOCHROME1")
    [(_, m2)] = read_image_file(tmp_path / "m2.dcm")
    [(_, m1)] = read_image_file(tmp_path / "m1.dcm")
    np.testing.assert_allclose(m2, expected_canonical(px, 0, 4095), atol=1e-6)
    np.testing.assert_array_equal(m1, -m2)  # stored 0 is white in MONOCHROME1
    assert m1[0, 0] == 1.0 and m1[1, 1] == -1.0
    s = read_image_folder(tmp_path / "m1.dcm")
    np.testing.assert_allclose(s.mapping.to_raw(s.images[0, 0].numpy().astype(np.float64)), px,
                               atol=1e-3)


def test_multiframe_and_rgb(tmp_path):
    frames = np.stack([STORED, STORED[::-1]])
    write_dicom(tmp_path / "mf.dcm", frames, bits_stored=12)
    s = read_image_folder(tmp_path)
    assert s.sources == [f"{tmp_path / 'mf.dcm'}#0", f"{tmp_path / 'mf.dcm'}#1"]
    np.testing.assert_array_equal(s.images[1, 0].numpy(), s.images[0, 0].numpy()[::-1])
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 255
    write_dicom(tmp_path / "c" / "rgb.dcm", rgb, photometric="RGB", modality="OT")
    with pytest.warns(ImageConversionWarning, match="rgb.dcm"):
        [(_, img)] = read_image_file(tmp_path / "c" / "rgb.dcm")
    np.testing.assert_allclose(img, 0.587 * 2 - 1, atol=1e-6)


def test_dicom_found_without_extension_and_without_preamble(tmp_path):
    write_dicom(tmp_path / "1.2.840.113619.2.55.3.1", STORED, bits_stored=12)
    write_dicom(tmp_path / "raw.dcm", STORED, bits_stored=12, preamble=False)
    s = read_image_folder(tmp_path)
    assert len(s) == 2 and not s.skipped
    np.testing.assert_array_equal(s.images[0], s.images[1])


def test_damaged_compressed_data_is_one_clear_line(tmp_path):
    # a JPEG-LS file whose stream is junk: the decoder is installed, the data is the problem
    write_dicom(tmp_path / "jls.dcm", STORED, bits_stored=12, compressed=True)
    with pytest.raises(InputError) as info:
        read_image_folder(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'jls.dcm'}: compressed DICOM (JPEG-LS")
    assert "damaged" in msg and "pylibjpeg" in msg and "\n" not in msg
    assert info.value.path == str(tmp_path / "jls.dcm")


def test_compressed_without_decoder_is_one_clear_line(tmp_path):
    from pydicom.uid import JPEG2000MC

    # JPEG 2000 Part 2: pydicom has no decoder for it, with or without plugins
    write_dicom(tmp_path / "j2k_mc.dcm", STORED, bits_stored=12, compressed=JPEG2000MC)
    with pytest.raises(InputError) as info:
        read_image_folder(tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'j2k_mc.dcm'}: compressed DICOM (JPEG 2000 Part 2")
    assert "no decoder is installed" in msg and "pip install" in msg and "\n" not in msg


def _bundled(name: str) -> np.ndarray:
    from pydicom.data import get_testdata_file

    # download=False: pydicom would otherwise try the network for a missing file
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom's bundled test file {name} is missing"
    return np.stack([img for _, img in read_image_file(path)])


# One bundled pydicom file per compressed transfer syntax, with an uncompressed (or lossless)
# reference of the same image where pydicom ships one.
COMPRESSED = {
    "1.2.840.10008.1.2.4.50": ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", 0.02),    # JPEG baseline
    "1.2.840.10008.1.2.4.51": ("JPGExtended.dcm", None, None),                     # JPEG extended
    "1.2.840.10008.1.2.4.70": ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm", 0.0),     # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", 0.0),  # JPEG-LS
    "1.2.840.10008.1.2.4.81": ("JPEGLSNearLossless_16.dcm", None, None),           # JPEG-LS near
    "1.2.840.10008.1.2.4.90": ("MR_small_jp2klossless.dcm", "MR_small.dcm", 0.0),  # J2K lossless
    "1.2.840.10008.1.2.4.91": ("JPEG2000.dcm", None, None),                        # JPEG 2000
    "1.2.840.10008.1.2.5": ("MR_small_RLE.dcm", "MR_small.dcm", 0.0),              # RLE lossless
}


@pytest.mark.parametrize("syntax", sorted(COMPRESSED))
def test_bundled_compressed_dicom_decodes(syntax):
    import pydicom
    from pydicom.data import get_testdata_file

    name, reference, tolerance = COMPRESSED[syntax]
    ds = pydicom.dcmread(get_testdata_file(name, download=False), stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == syntax
    img = _bundled(name)
    assert img.ndim == 3 and np.isfinite(img).all() and len(np.unique(img)) >= 5  # not blank
    assert img.min() >= -1 and img.max() <= 1
    if reference is not None:
        # lossless syntaxes give the reference exactly; baseline JPEG is lossy
        assert np.abs(img - _bundled(reference)).max() <= tolerance


def test_bundled_lossy_jpeg_and_jpeg2000_show_one_image():
    # JPGExtended (12-bit lossy JPEG) and JPEG2000 are both encodings of WG04's NM1 image
    a, b = _bundled("JPGExtended.dcm"), _bundled("JPEG2000.dcm")
    assert a.shape == b.shape == (1, 1024, 256)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_dicom_without_pixels_and_garbage(tmp_path):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # a structured report
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "sr.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = "SR"
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match=r"sr\.dcm: DICOM file has no pixel data"):
        read_image_file(tmp_path / "sr.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(InputError, match=r"junk\.dcm: "):
        read_image_file(tmp_path / "junk.dcm")
