"""The memorisation audit's nearest-training searches against independent references.

Cross-set nearest SSIM against a scikit-image loop (value and partner), nearest Pearson against
scipy.stats.pearsonr, nearest feature distance against scipy's cdist, and the shifted/flipped
views against images built by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist
from scipy.stats import pearsonr
from skimage.metrics import structural_similarity

from genbench.errors import InputError
from genbench.metrics.mem import (
    Transform,
    nearest_feature_distance,
    nearest_pearson,
    nearest_training,
    parse_transforms,
    query_view,
    reference_view,
)
from genbench.metrics.ssim import _cross_tiles, nearest_ssim, nearest_ssim_cross

SK = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 2}


def structured(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    x = gaussian_filter(rng.standard_normal((n, h, w)), (0, 1.5, 1.5)) * 4
    x += 0.1 * rng.standard_normal((n, h, w))
    return np.clip(x, -1, 1).astype(np.float32)


def skimage_matrix(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.array([[structural_similarity(a.astype(np.float64), b.astype(np.float64), **SK) for b in r]
                     for a in q])


@pytest.mark.parametrize("engine, block, query_block", [
    ("numba", 5, 3), ("numba", 64, 256), ("numba", 1, 1), ("torch", 4, 3), ("torch", 32, 32)])
def test_cross_nearest_matches_skimage_loop(engine: str, block: int, query_block: int) -> None:
    rng = np.random.default_rng(11)
    q = structured(rng, 9, 19, 23)
    r = structured(rng, 14, 19, 23)
    q[2] = r[6]          # an exact copy: SSIM 1 with partner 6 ...
    r[11] = r[6]         # ... and a tie with 11: the lowest index must win
    q[5] = 0.3           # a constant image
    r[3] = np.where(r[3] > 0, 1.0, -1.0)  # a binary image at the range limits
    ref = skimage_matrix(q, r)
    values, index = nearest_ssim_cross(q, r, engine=engine, block=block, query_block=query_block)
    np.testing.assert_allclose(values, ref.max(axis=1), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(index, ref.argmax(axis=1))
    assert index[2] == 6 and values[2] == pytest.approx(1.0, abs=1e-6)


def test_cross_equals_the_within_set_engine_pair_for_pair() -> None:
    """Same kernels: a query's nearest SSIM over the other images equals nearest_ssim's (up to
    the order of a fused multiply-add: SSIM(a, b) and SSIM(b, a) differ by ~1e-9 in float32)."""
    rng = np.random.default_rng(2)
    x = structured(rng, 12, 16, 18)
    within = nearest_ssim(x)
    for i in (0, 5, 11):
        others = np.delete(x, i, axis=0)
        v, _ = nearest_ssim_cross(x[i : i + 1], others)
        assert v[0] == pytest.approx(within[i], abs=1e-7)


def test_cross_ties_do_not_depend_on_tile_order() -> None:
    rng = np.random.default_rng(3)
    r = structured(rng, 10, 16, 16)
    r[7] = r[2]
    r[9] = r[2]
    q = np.repeat(r[2:3], 7, axis=0)  # several query blocks, swept forwards and backwards
    for qb, b in [(1, 1), (2, 3), (3, 2), (7, 10)]:
        _, idx = nearest_ssim_cross(q, r, block=b, query_block=qb)
        assert (idx == 2).all(), (qb, b, idx)


@given(nq=st.integers(1, 30), nr=st.integers(1, 30), bq=st.integers(1, 9), br=st.integers(1, 9))
def test_cross_tiles_cover_each_pair_once(nq: int, nr: int, bq: int, br: int) -> None:
    seen = np.zeros((nq, nr), int)
    for i0, i1, j0, j1 in _cross_tiles(nq, nr, bq, br):
        seen[i0:i1, j0:j1] += 1
    assert (seen == 1).all()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nq=st.integers(1, 5), nr=st.integers(1, 6), h=st.integers(11, 20), w=st.integers(11, 20),
       seed=st.integers(0, 2**16))
def test_property_cross_engines_equal_skimage(nq: int, nr: int, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, r = structured(rng, nq, h, w), structured(rng, nr, h, w)
    ref = skimage_matrix(q, r)
    for engine in ("numba", "torch"):
        v, i = nearest_ssim_cross(q, r, engine=engine, block=2, query_block=2)
        np.testing.assert_allclose(v, ref.max(axis=1), rtol=0, atol=1e-5)
        np.testing.assert_array_equal(i, ref.argmax(axis=1))


def test_cross_progress_and_bad_input() -> None:
    rng = np.random.default_rng(4)
    q, r = structured(rng, 5, 12, 12), structured(rng, 7, 12, 12)
    calls: list[tuple[int, int]] = []
    nearest_ssim_cross(q, r, block=2, query_block=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (35, 35)
    with pytest.raises(InputError, match="one size"):
        nearest_ssim_cross(q, structured(rng, 3, 12, 13))
    with pytest.raises(InputError, match="at least 1 image"):
        nearest_ssim_cross(q[:0], r)


def test_nearest_pearson_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    q = torch.from_numpy(structured(rng, 11, 13, 17))
    r = torch.from_numpy(structured(rng, 23, 13, 17))
    q[4] = r[9] * 0.5 + 0.1  # an affine copy: correlation 1 with partner 9
    r[1] = 0.2  # constant images score 0 (no defined correlation), also against each other
    r[2] = 0.2
    q[7] = 0.2
    ref = np.array([[0.0 if np.ptp(a.numpy()) == 0 or np.ptp(b.numpy()) == 0
                     else pearsonr(a.double().ravel(), b.double().ravel())[0] for b in r] for a in q])
    for block in (4, 512):
        v, i = nearest_pearson(q, r, block=block)
        np.testing.assert_allclose(v, ref.max(axis=1), rtol=0, atol=1e-5)
        np.testing.assert_array_equal(i, ref.argmax(axis=1))
    assert i[4] == 9 and v[4] == pytest.approx(1.0, abs=1e-5)


def test_nearest_feature_distance_matches_cdist() -> None:
    rng = np.random.default_rng(6)
    q, r = rng.standard_normal((9, 16)), rng.standard_normal((30, 16))
    q[3] = r[17]
    d, i = nearest_feature_distance(q, r, block=4)
    ref = cdist(q, r)
    np.testing.assert_allclose(d, ref.min(axis=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(i, ref.argmin(axis=1))
    assert i[3] == 17 and d[3] == pytest.approx(0.0, abs=1e-6)


def test_parse_transforms() -> None:
    assert [t.name for t in parse_transforms("none")] == ["identity"]
    assert [t.name for t in parse_transforms("flip")] == ["identity", "flip"]
    s1 = parse_transforms("shift1")
    assert len(s1) == 9 and s1[0] == Transform() and len(set(s1)) == 9
    assert len(parse_transforms("flip,shift2")) == 50
    for bad in ("rotate", "shift0", "shift9"):
        with pytest.raises(Exception, match="mem-transforms"):
            parse_transforms(bad)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("dy, dx", [(0, 0), (1, -2), (-2, 2), (2, 0)])
def test_views_find_shifted_and_flipped_copies(flip: bool, dy: int, dx: int) -> None:
    """A training image flipped and shifted (any border fill) is an exact copy on the views."""
    rng = np.random.default_rng(7)
    train = torch.from_numpy(structured(rng, 6, 24, 26))
    src = torch.flip(train[4], dims=(-1,)) if flip else train[4].clone()
    copy = torch.roll(src, shifts=(dy, dx), dims=(-2, -1))  # wraps around: the border is junk
    views = parse_transforms("flip,shift2")
    near = nearest_training(copy[None], train, transforms=views)
    assert near.index[0] == 4
    assert views[near.transform[0]] == Transform(flip, dy, dx)
    assert near.value[0] == pytest.approx(1.0, abs=1e-6)
    # The views are crops, not padded shifts: compared pixels are exactly the copy's.
    k = 2
    np.testing.assert_array_equal(query_view(copy, k).numpy(),
                                  reference_view(train[4], Transform(flip, dy, dx), k).numpy())
    pear = nearest_training(copy[None], train, measure="pearson", transforms=views)
    assert pear.index[0] == 4 and pear.value[0] == pytest.approx(1.0, abs=1e-5)


def test_without_transforms_a_shifted_copy_is_not_an_exact_match() -> None:
    rng = np.random.default_rng(8)
    train = torch.from_numpy(structured(rng, 6, 24, 26))
    copy = torch.roll(train[4], shifts=(2, 1), dims=(-2, -1))
    near = nearest_training(copy[None], train)
    assert near.value[0] < 0.9
