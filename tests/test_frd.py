"""FRD: the frd-score package's value, a proper 0 for identical sets, the per-image cache, the pool.

Radiomic extraction costs ~0.1-0.3 s per 32 px image (v1) on the 2-core CPU, so the sets here
are small; the session-wide cache folder lets tests share features of identical images.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("frd_score")
pytest.importorskip("radiomics")

from genbench.data.prepare import prepare_dataset
from genbench.data.presets import PRESETS
from genbench.io import write_png_folder
from genbench.metrics import frd


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("radiomics-cache")


@pytest.fixture(scope="module")
def pelvic():
    ds = prepare_dataset("pelvic", size=32, n=80, seed=0, use_cache=False)
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(ds.train), generator=g)
    return ds.test.images[:8], ds.train.images[pick[:8]]


def _cli_value(a, b, version):
    out = subprocess.run([sys.executable, "-m", "frd_score", str(a), str(b), "-w", "1",
                          "--frd_version", version], capture_output=True, text=True, check=True)
    m = re.search(r"FRD \((v\d)\): (\S+)", out.stdout)
    assert m and m.group(1) == version, out.stdout[-500:] + out.stderr[-500:]
    return float(m.group(2))


@pytest.mark.parametrize("version", ["v1", "v0"])
def test_equals_the_frd_score_command_line_on_the_same_png_folders(tmp_path, cache, pelvic, version):
    real, synth = pelvic
    write_png_folder(real, tmp_path / "real")
    write_png_folder(synth, tmp_path / "synth")
    fr = frd.radiomic_features(real, version=version, cache_dir=cache, n_jobs=1)
    fs = frd.radiomic_features(synth, version=version, cache_dir=cache, n_jobs=1)
    st = frd.frd_from_features(fr, fs, version)
    expected = _cli_value(tmp_path / "real", tmp_path / "synth", version)
    assert math.isfinite(expected)
    assert st.value == pytest.approx(expected, rel=1e-6, abs=0)
    if version == "v1":
        assert st.value == pytest.approx(math.log(st.d2), rel=1e-12)
        assert st.params()["paper_eq3_ln_d"] == pytest.approx(st.value / 2, rel=1e-12)
        # 2-D slices: pyradiomics skips the LoG images; 385 features + 13 numeric diagnostics.
        assert fr.n_features == 398
    else:
        assert st.value == pytest.approx(st.d2, rel=1e-12)
        assert fr.n_features == 102


def test_the_reference_is_the_real_set(cache, pelvic):
    """v1 z-scores with D1's statistics: swapping the sets changes the value (FRD is not symmetric)."""
    real, synth = pelvic
    fr = frd.radiomic_features(real, cache_dir=cache, n_jobs=1)
    fs = frd.radiomic_features(synth, cache_dir=cache, n_jobs=1)
    assert frd.frd_statistic(fr.values, fs.values).value != pytest.approx(
        frd.frd_statistic(fs.values, fr.values).value, rel=1e-3)


def test_identical_sets_give_zero_not_minus_infinity(cache, pelvic):
    real, _ = pelvic
    fr = frd.radiomic_features(real, cache_dir=cache, n_jobs=1)
    for version in ("v1",):
        st = frd.frd_statistic(fr.values, fr.values, version)
        assert (st.value, st.d2, st.identical) == (0.0, 0.0, True)
        # The same images in another order: equal statistics up to summation round-off.
        perm = np.random.default_rng(0).permutation(len(fr))
        st = frd.frd_statistic(fr.values, fr.values[perm], version)
        assert (st.value, st.identical) == (0.0, True)
        assert st.params()["identical_statistics"] is True
    # One image replaced: a real, finite distance (not mistaken for identical).
    other = fr.values.copy()
    other[0] = other[1]
    st = frd.frd_statistic(fr.values, other)
    assert not st.identical and st.d2 > 0 and math.isfinite(st.value)


@pytest.mark.parametrize("name", list(PRESETS))
def test_real_floor_is_below_a_noisy_set_on_every_phantom(cache, name):
    ds = prepare_dataset(name, size=32, n=120, seed=0, use_cache=False)
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(ds.train), generator=g)
    real = ds.test.images[:10]
    other = ds.train.images[pick[:10]]
    noisy = (other + 0.3 * torch.randn(other.shape, generator=g)).clamp(-1, 1)
    fr, fo, fn = (frd.radiomic_features(x, cache_dir=cache, n_jobs=1) for x in (real, other, noisy))
    floor = frd.frd_from_features(fr, fo).value
    bad = frd.frd_from_features(fr, fn).value
    assert floor < bad - 0.5, (name, floor, bad)


def test_features_are_cached_per_image_content(tmp_path, pelvic):
    real, _ = pelvic
    x = real[:4].clone()
    first = frd.radiomic_features(x, cache_dir=tmp_path, n_jobs=1)
    assert first.n_extracted == 4
    again = frd.radiomic_features(x, cache_dir=tmp_path, n_jobs=1)
    assert again.n_extracted == 0
    np.testing.assert_array_equal(again.values, first.values)
    # One image changed: only that one is extracted; the others' rows are unchanged.
    x[2] = -x[2]
    changed = frd.radiomic_features(x, cache_dir=tmp_path, n_jobs=1)
    assert changed.n_extracted == 1
    np.testing.assert_array_equal(changed.values[[0, 1, 3]], first.values[[0, 1, 3]])
    assert not np.allclose(changed.values[2], first.values[2])
    # A different version is a different cache entry.
    assert frd.radiomic_features(x[:1], version="v0", cache_dir=tmp_path, n_jobs=1).n_extracted == 1
    # A corrupt entry is recomputed, not trusted.
    entries = sorted((tmp_path / "radiomics").rglob("*.npy"))
    assert entries
    for p in entries:
        p.write_bytes(b"garbage")
    redo = frd.radiomic_features(x, cache_dir=tmp_path, n_jobs=1)
    assert redo.n_extracted == 4
    np.testing.assert_array_equal(redo.values, changed.values)


def test_process_pool_gives_the_serial_features(monkeypatch, pelvic):
    real, _ = pelvic
    torch.set_num_threads(2)
    torch.ones(64, 64) @ torch.ones(64, 64)  # the parent's torch thread pool exists before the fork
    serial = frd.radiomic_features(real[:6], use_cache=False, n_jobs=1)
    monkeypatch.setattr(frd, "POOL_MIN_IMAGES", 2)
    seen = []
    pooled = frd.radiomic_features(real[:6], use_cache=False, n_jobs=2,
                                   progress=lambda d, t: seen.append((d, t)))
    np.testing.assert_array_equal(pooled.values, serial.values)
    assert seen[-1] == (6, 6)


def test_organ_masks_restrict_the_features(pelvic):
    real, _ = pelvic
    x = real[:3]
    masks = np.zeros((3, 32, 32), dtype=bool)
    masks[:, 8:24, 8:24] = True
    masks[2] = False
    masks[2, 5, 5] = True  # one voxel: the package skips this image
    whole = frd.radiomic_features(x, use_cache=False, n_jobs=1)
    organ = frd.radiomic_features(x, masks=masks, use_cache=False, n_jobs=1)
    assert organ.kept.tolist() == [True, True, False]
    assert len(organ) == 2 and organ.names == whole.names
    assert not np.allclose(organ.values, whole.values[:2])


def test_a_wrong_version_is_a_usage_error():
    from genbench.errors import UsageError

    with pytest.raises(UsageError, match="--frd-version"):
        frd.check_version("v2")


def test_vectorised_normalisation_is_bitwise_the_packages():
    from frd_score import frd as pkg

    rng = np.random.default_rng(0)
    r = rng.normal(size=(30, 12)) * rng.uniform(0.1, 50, size=12)
    s = rng.normal(size=(25, 12)) * 2 + 1
    r[:, 3] = 7.0  # constant in the reference: std 0 -> inf/NaN columns, dropped afterwards
    s[2, 5] = np.inf
    r32, s32 = r.astype(np.float32), s.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for f in (r32, s32):
            want = pkg.z_score_normalize(f, 0.0, 1.0, base_distribution=r32, replace_nan=False,
                                         handle_std_zero=False)
            np.testing.assert_array_equal(frd._zscore_v1(f, r32, 0.0, 1.0), want)
    s[4, 1] = np.nan
    r[:, 7] = s[:, 7] = -2.0  # constant over both sets: min-max maps it to the range's centre
    base = np.concatenate([r, s])
    for f in (r, s):
        want = pkg.min_max_normalize(f, 0.0, 7.45670747756958, base_distribution=base)
        np.testing.assert_array_equal(frd._minmax_v0(f, base, 0.0, 7.45670747756958), want)


def test_bootstrap_replicates_rerun_the_pipeline_on_resampled_images():
    from genbench.stats import REAL, SYNTH, Bootstrap

    rng = np.random.default_rng(1)
    r, s = rng.normal(size=(12, 6)), rng.normal(size=(10, 6)) + 0.5
    boot = Bootstrap(replicates=4, seed=3)
    reps = frd.frd_replicates(r, s, "v1", boot)
    for i in range(4):
        ir = boot.indices(12, REAL, i, i + 1)[0]
        is_ = boot.indices(10, SYNTH, i, i + 1)[0]
        assert reps[i] == frd.frd_statistic(r[ir], s[is_]).value
    assert len(set(reps.tolist())) == 4


def test_a_column_not_finite_in_either_set_is_dropped_from_both():
    rng = np.random.default_rng(4)
    r, s = rng.normal(size=(15, 8)), rng.normal(size=(12, 8)) + 0.3
    s_bad = s.copy()
    s_bad[3, 2] = np.inf  # not finite in the synthetic set only
    st = frd.frd_statistic(r, s_bad)
    keep = [c for c in range(8) if c != 2]
    assert st.dropped_columns == 1 and st.n_features == 7
    assert st.value == frd.frd_statistic(r[:, keep], s[:, keep]).value
    # A NaN feature drops the image (v1), not the column.
    s_nan = s.copy()
    s_nan[5, 4] = np.nan
    st = frd.frd_statistic(r, s_nan)
    assert st.dropped_rows == (0, 1) and st.n_synth == 11
    assert st.value == frd.frd_statistic(r, np.delete(s, 5, axis=0)).value
