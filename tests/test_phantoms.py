"""Built-in phantoms: reproducible, physically plausible values, consistent labels, varied."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from genbench.data.phantoms import SPECS, generate_phantoms
from genbench.errors import UsageError

NAMES = ["pelvic", "abdomen", "heart", "chest"]


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed(name):
    a, la = generate_phantoms(name, 12, 32, seed=3)
    b, lb = generate_phantoms(name, 12, 32, seed=3)
    c, _ = generate_phantoms(name, 12, 32, seed=4)
    assert a.dtype == np.float32 and a.shape == (12, 32, 32) and la.shape == (12, 32, 32)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert np.abs(a - c).mean() > 1e-3 * (np.abs(a).mean() + 1)


@pytest.mark.parametrize("name", NAMES)
def test_value_ranges_and_anatomy(name):
    img, lab = generate_phantoms(name, 40, 48, seed=0)
    assert np.isfinite(img).all()
    if name in ("pelvic", "abdomen"):
        assert img.min() >= -1024 and img.max() <= 3071
        air = img[lab == 0]
        assert np.median(air) < -900  # outside the body is air
        for organ, (lo, hi) in {"bladder": (-40, 60), "liver": (40, 200)}.items():
            ids = [k for k, v in SPECS[name].labels.items() if v == organ]
            if ids and (lab == ids[0]).sum() > 50:
                core = ndimage.binary_erosion(lab == ids[0], iterations=1)
                assert lo < np.median(img[core]) < hi, organ
        bone = [k for k, v in SPECS[name].labels.items() if v == "bone"][0]
        assert np.median(img[lab == bone]) > 150
    elif name == "heart":
        assert img.min() >= 0
        # bSSFP: blood pool brighter than myocardium in every slice that shows both.
        for i in range(len(img)):
            if (lab[i] == 3).sum() > 10 and (lab[i] == 2).sum() > 10:
                assert np.median(img[i][lab[i] == 3]) > 1.5 * np.median(img[i][lab[i] == 2])
    else:
        assert img.min() >= 0 and img.max() <= 255
        lungs = np.isin(lab, (1, 2))
        assert np.median(img[lungs]) < np.median(img[lab == 4])  # lungs darker than soft tissue
    # Labelled organs lie inside the body: their one-pixel neighbourhood never touches label 0.
    body_id = [k for k, v in SPECS[name].labels.items() if v == "body"][0]
    organs = (lab > 0) & (lab != body_id)
    grown = ndimage.binary_dilation(organs, structure=np.ones((1, 3, 3), bool))
    outside = lab == 0
    if name == "heart":  # the image ends at the scanner's field of view, the body may not
        outside &= img > 0
    assert not (grown & outside).any()


@pytest.mark.parametrize("name", NAMES)
def test_varied_nearest_ssim(name):
    img, _, pid = generate_phantoms(name, 60, 48, seed=1, return_patients=True)
    lo, hi = np.percentile(img, [0.5, 99.5])
    x = np.clip((img - lo) / (hi - lo), 0, 1)
    # One slice from each of 8 different synthetic patients.
    picks = [int(np.flatnonzero(pid == p)[0]) for p in np.unique(pid)[:8]]
    nearest = []
    for i in picks:
        s = [
            structural_similarity(
                x[i],
                x[j],
                data_range=1.0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for j in picks
            if j != i
        ]
        nearest.append(max(s))
    assert max(nearest) < 0.9, nearest
    assert np.std(x[picks].reshape(len(picks), -1), axis=0).mean() > 0.02


def test_patients_group_slices():
    _, _, pid = generate_phantoms("pelvic", 25, 16, seed=0, return_patients=True)
    assert pid.tolist() == [i // 10 for i in range(25)]


def test_bad_arguments():
    with pytest.raises(UsageError, match="no phantom"):
        generate_phantoms("brain", 2, 16)
    with pytest.raises(UsageError):
        generate_phantoms("pelvic", 0, 16)
