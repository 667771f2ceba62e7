"""Real-format loaders on small files written here: orientation, spacing, HU, padding, selection."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from genbench.data import get_preset, prepare_dataset
from genbench.data.loaders import discover, load_case
from genbench.errors import InputError

HU = (-1024.0, 3012.0)


def canon_hu(hu: float) -> float:
    return (min(max(hu, HU[0]), HU[1]) - HU[0]) / (HU[1] - HU[0]) * 2 - 1


def save_nifti(path: Path, arr: np.ndarray, zooms, flip_x: bool = False) -> None:
    affine = np.diag([*zooms, 1.0]).astype(float)
    if flip_x:  # same anatomy stored with the first axis reversed (an LPS-like file)
        arr = arr[::-1]
        affine[0, 0] = -zooms[0]
        affine[0, 3] = (arr.shape[0] - 1) * zooms[0]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr), affine), str(path))


def load_all(name: str, root: Path, size: int, options: dict | None = None):
    preset = get_preset(name)
    cases = discover(preset, root, options or {}, None)
    return [load_case(preset, c, size, options or {}) for c in cases]


# ----------------------------------------------------------------------------- abdomen (NIfTI)


def btcv_volume():
    """X=40 (R<-L), Y=30 (P->A), Z=6 axial slices at 1.52 x 1.52 x 3 mm (the preset's spacing)."""
    img = np.full((40, 30, 6), -1000.0, dtype=np.float32)
    img[5:35, 3:27, :] = 40.0
    img[2, 27, 3] = 1000.0  # marker: near the patient's left (low x), anterior (high y), slice 3
    img[30, 5, 3] = -3000.0  # below the window: clipped to -1024
    lab = np.zeros(img.shape, dtype=np.uint8)
    lab[10:20, 10:20, 2:4] = 6  # liver in slices 2 and 3
    lab[10:20, 10:20, 5] = 14  # not a BTCV organ: must not select slice 5
    return img, lab


@pytest.mark.parametrize("flip_x", [False, True])
def test_abdomen_orientation_hu_padding_selection(tmp_path, flip_x):
    img, lab = btcv_volume()
    (tmp_path / "img").mkdir()
    (tmp_path / "label").mkdir()
    save_nifti(tmp_path / "img" / "img0001.nii.gz", img, (1.52, 1.52, 3.0), flip_x)
    save_nifti(tmp_path / "label" / "label0001.nii.gz", lab, (1.52, 1.52, 3.0), flip_x)
    (got,) = load_all("abdomen", tmp_path, 256)
    assert got.sources == ["img0001:z2", "img0001:z3"]
    x = got.images
    assert x.shape == (2, 256, 256)
    # Rows: anterior first; columns: the patient's right first. Canvas offsets of a 30 x 40 slice.
    r0, c0 = (256 - 30) // 2, (256 - 40) // 2
    marker = np.unravel_index(np.argmax(x[1]), x[1].shape)
    assert marker == (r0 + (30 - 1 - 27), c0 + (40 - 1 - 2))
    assert x[1][marker] == pytest.approx(canon_hu(1000.0), abs=1e-5)
    assert x[0, r0 + 10, c0 + 20] == pytest.approx(canon_hu(40.0), abs=1e-5)
    assert x[1, r0 + 30 - 1 - 5, c0 + 40 - 1 - 30] == pytest.approx(-1.0)  # -3000 HU clipped
    assert x[0, 0, 0] == -1.0 and x[0, -1, -1] == -1.0  # padding is air, -1024 HU


def test_ct_spacing_resampling(tmp_path):
    img = np.full((40, 40, 8), 40.0, dtype=np.float32)
    img[10:20, 10:20, :] = 1000.0  # a 10 x 10 mm square at 1 mm
    lab = np.ones(img.shape, dtype=np.uint8)
    pdir = tmp_path / "p01"
    pdir.mkdir()
    save_nifti(pdir / "ct.nii.gz", img, (1.0, 1.0, 1.0))
    save_nifti(pdir / "mask.nii.gz", lab, (1.0, 1.0, 1.0))
    (got,) = load_all("pelvic", tmp_path, 256)
    assert len(got.images) == 4  # 8 mm of slices at 2 mm
    sl = got.images[0]
    body = sl > -1.0
    assert body.sum() == 20 * 20  # 40 mm at 2 mm
    bright = sl > (canon_hu(1000.0) + canon_hu(40.0)) / 2
    assert 16 <= bright.sum() <= 36  # ~5 x 5 pixels, up to partial-volume edges


def test_label_shape_mismatch_and_nan(tmp_path):
    img, lab = btcv_volume()
    save_nifti(tmp_path / "img0001.nii.gz", img, (1.52, 1.52, 3.0))
    save_nifti(tmp_path / "label0001.nii.gz", lab[:, :, :5], (1.52, 1.52, 3.0))
    with pytest.raises(InputError, match="label0001.nii.gz.*shape"):
        load_all("abdomen", tmp_path, 32)
    save_nifti(tmp_path / "label0001.nii.gz", lab, (1.52, 1.52, 3.0))
    img[3, 3, 3] = np.nan
    save_nifti(tmp_path / "img0001.nii.gz", img, (1.52, 1.52, 3.0))
    with pytest.raises(InputError, match="img0001.nii.gz.*NaN"):
        load_all("abdomen", tmp_path, 32)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="nowhere.*not found"):
        prepare_dataset("abdomen", data_dir=tmp_path / "nowhere", cache_dir=tmp_path / "c")


# ----------------------------------------------------------------------------- pelvic (DICOM)


def write_dicom_series(folder: Path, positions, *, slope=2.0, intercept=-1024.0, rows=24, cols=32):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series = generate_uid()
    order = list(range(len(positions)))[::-1]  # written in reverse: the reader must sort
    for k in order:
        hu = np.full((rows, cols), 40.0)
        hu[:2, :] = -1024.0
        if k == 2:
            hu[3, 5] = 1000.0  # marker near the top-left: anterior, patient's right
        stored = np.round((hu - intercept) / slope).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.Modality = "CT"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [2.0, 2.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(positions[k])]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm", enforce_file_format=True)


def test_pelvic_dicom_series(tmp_path):
    write_dicom_series(tmp_path / "patA", [0, 2, 4, 6, 8])
    mask = np.zeros((5, 24, 32), dtype=np.uint8)  # (slice, row, col) in sorted series order
    mask[1:4, 10:14, 10:14] = 1
    np.save(tmp_path / "patA" / "organ_mask.npy", mask)
    (got,) = load_all("pelvic", tmp_path, 256)
    assert got.sources == ["patA:z1", "patA:z2", "patA:z3"]
    r0, c0 = (256 - 24) // 2, (256 - 32) // 2
    x = got.images[1]
    assert np.unravel_index(np.argmax(x), x.shape) == (r0 + 3, c0 + 5)
    assert x[r0 + 3, c0 + 5] == pytest.approx(
        canon_hu(1000.0), abs=1e-5
    )  # slope 2, intercept -1024
    assert x[r0 + 10, c0 + 10] == pytest.approx(canon_hu(40.0), abs=1e-5)
    assert x[0, 0] == -1.0


def test_dicom_inconsistent_spacing(tmp_path):
    write_dicom_series(tmp_path / "patB", [0, 2, 4, 8])
    np.save(tmp_path / "patB" / "mask.npy", np.ones((4, 24, 32), np.uint8))
    with pytest.raises(InputError, match=r"slice\d+\.dcm.*inconsistent slice spacing"):
        load_all("pelvic", tmp_path, 32)


def test_dicom_mask_shape_mismatch(tmp_path):
    write_dicom_series(tmp_path / "patC", [0, 2, 4])
    np.save(tmp_path / "patC" / "mask.npy", np.ones((4, 24, 32), np.uint8))
    with pytest.raises(InputError, match="mask.npy.*does not match"):
        load_all("pelvic", tmp_path, 32)


# ----------------------------------------------------------------------------- chest (PNG)


def test_chest_png_folder_csv_and_16bit(tmp_path):
    for pid in range(3):
        for k in range(2):
            a = np.zeros((40, 40), dtype=np.uint8)
            a[:10, :10] = 255  # top-left marker stays top-left
            Image.fromarray(a).save(tmp_path / f"{pid:08d}_{k:03d}.png")
    a16 = np.full((40, 40), 65535, dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "00000009_000.png")
    cases = load_all("chest", tmp_path, 20)
    assert [c.patient for c in cases] == ["00000000", "00000001", "00000002", "00000009"]
    x = cases[0].images[0]
    assert x.shape == (20, 20)
    assert x[0, 0] == pytest.approx(1.0) and x[-1, -1] == pytest.approx(-1.0)
    assert x[:4, :4].min() == pytest.approx(1.0) and x[6:, 6:].max() == pytest.approx(-1.0)
    assert cases[3].images[0].min() == pytest.approx(1.0)  # 16-bit full scale = 255 gray
    # The official CSV selects and orders images and names the patients.
    with open(tmp_path / "Data_Entry_2017.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Image Index", "Finding Labels", "Patient ID"])
        for name in ["00000002_001.png", "00000000_000.png", "00000002_000.png", "missing.png"]:
            w.writerow([name, "No Finding", name[:8]])
    preset = get_preset("chest")
    cases = discover(preset, tmp_path, {}, 2)
    assert [(c.patient, [p.name for p in c.files["image"]]) for c in cases] == [
        ("00000002", ["00000002_001.png"]),
        ("00000000", ["00000000_000.png"]),
    ]


# ----------------------------------------------------------------------------- heart (ACDC NIfTI)


def write_acdc(root: Path, patients: int, frames: int = 4) -> None:
    for p in range(patients):
        d = root / f"patient{p + 1:03d}"
        d.mkdir(parents=True)
        cine = np.zeros((20, 16, 3, frames), dtype=np.float32)
        cine[4:16, 2:14] = 100.0 + 10 * np.arange(frames)
        cine[3, 12, 1, 2] = 500.0  # marker in frame 2, slice 1
        save_nifti(d / f"patient{p + 1:03d}_4d.nii.gz", cine, (2.0, 2.0, 5.0))
        for t in (0, 2):
            save_nifti(
                d / f"patient{p + 1:03d}_frame{t + 1:02d}.nii.gz", cine[..., t], (2.0, 2.0, 5.0)
            )
            save_nifti(
                d / f"patient{p + 1:03d}_frame{t + 1:02d}_gt.nii.gz",
                (cine[..., t] > 0).astype(np.uint8),
                (2.0, 2.0, 5.0),
            )


def test_heart_cine_frames_orientation_minmax(tmp_path):
    write_acdc(tmp_path, 1)
    (got,) = load_all("heart", tmp_path, 256, {"frames": "0,2"})
    assert len(got.images) == 6  # 2 frames x 3 slices
    assert got.sources[4] == "patient001:patient001_4d#t2#z1"
    x = got.images[4]
    r0, c0 = (256 - 16) // 2, (256 - 20) // 2
    assert np.unravel_index(np.argmax(x), x.shape) == (r0 + 12, c0 + 3)  # data[:, :, k].T
    assert x.max() == pytest.approx(1.0) and x[0, 0] == pytest.approx(
        -1.0
    )  # per-scan min-max, pad = min
    assert got.images[0].max() == pytest.approx(1.0)  # each scan normalised on its own
    (ed_es,) = load_all("heart", tmp_path, 64)  # default: the 3-D frame files
    assert len(ed_es.images) == 6 and ed_es.images.shape[1:] == (64, 64)
    with pytest.raises(InputError, match="frame 7"):
        load_all("heart", tmp_path, 32, {"frames": "7"})


def test_heart_inplane_resampling(tmp_path):
    d = tmp_path / "patient001"
    d.mkdir()
    vol = np.zeros((40, 30, 2), dtype=np.float32)
    vol[10:30, 5:25] = 1.0
    save_nifti(d / "patient001_frame01.nii.gz", vol, (1.0, 1.0, 10.0))
    (got,) = load_all("heart", tmp_path, 256)
    assert len(got.images) == 2  # slice thickness kept
    # 20 mm x 20 mm at 2 mm: 100 pixels of area (an odd edge is split over two pixels).
    assert ((got.images[0] + 1) / 2).sum() == pytest.approx(100.0, abs=1e-3)
    assert (got.images[0] > 0.99).sum() == 9 * 10
