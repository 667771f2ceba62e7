"""SSIM and the nearest-SSIM engine against scikit-image (the reference definition)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from genbench.errors import InputError
from genbench.metrics.ssim import _tiles, nearest_ssim, ssim_pair

SK = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 2}


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(np.asarray(a), np.asarray(b), **SK))


def structured(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Smooth random fields plus noise, clipped to [-1, 1] (so some pixels sit at the limits)."""
    x = gaussian_filter(rng.standard_normal((n, h, w)), (0, 1.5, 1.5)) * 4
    x += 0.1 * rng.standard_normal((n, h, w))
    return np.clip(x, -1, 1).astype(np.float32)


def brute_nearest(x: np.ndarray) -> np.ndarray:
    n = len(x)
    best = np.full(n, -np.inf)
    for a in range(n):
        for b in range(a + 1, n):
            s = skimage_ssim(x[a], x[b])
            best[a] = max(best[a], s)
            best[b] = max(best[b], s)
    return best


@pytest.mark.parametrize("shape", [(11, 11), (16, 16), (13, 29), (33, 17), (64, 64)])
def test_pair_matches_skimage(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    x = structured(rng, 4, *shape)
    for a, b in [(0, 1), (2, 3), (1, 3)]:
        ours = ssim_pair(x[a], x[b])
        # skimage in float64 (exact) and on the float32 canonical arrays as given.
        assert ours == pytest.approx(skimage_ssim(x[a].astype(np.float64), x[b].astype(np.float64)), abs=1e-10)
        assert ours == pytest.approx(skimage_ssim(x[a], x[b]), abs=1e-5)


def test_pair_constant_and_range_limits() -> None:
    rng = np.random.default_rng(0)
    const_a = np.full((16, 20), 0.3, np.float32)
    const_b = np.full((16, 20), -0.7, np.float32)
    plus = np.ones((16, 20), np.float32)
    minus = -plus
    binary = np.where(rng.random((16, 20)) > 0.5, 1.0, -1.0).astype(np.float32)
    tex = structured(rng, 1, 16, 20)[0]
    for a, b in [(const_a, const_b), (const_a, const_a), (plus, minus), (binary, tex),
                 (binary, plus), (const_a, tex)]:
        assert ssim_pair(a, b) == pytest.approx(skimage_ssim(a.astype(float), b.astype(float)), abs=1e-10)
    assert ssim_pair(const_a, const_a) == pytest.approx(1.0, abs=1e-12)


def test_pair_too_small_is_an_input_error() -> None:
    x = np.zeros((10, 30), np.float32)
    with pytest.raises(InputError, match="11x11"):
        ssim_pair(x, x)
    with pytest.raises(ValueError):  # scikit-image refuses it too
        skimage_ssim(x, x)


@pytest.mark.parametrize("shape", [(16, 16), (13, 29), (24, 11)])
def test_nearest_matches_skimage_loop(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    x = structured(rng, 9, *shape)
    x[4] = x[1]  # duplicate: both must get nearest SSIM 1
    x[6] = 0.25  # constant image (sigma = 0)
    x[7] = np.where(x[7] > 0, 1.0, -1.0)  # binary image at the range limits
    ref = brute_nearest(x)
    got = nearest_ssim(torch.from_numpy(x)[:, None], block=4)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert got[1] == pytest.approx(1.0, abs=1e-6) and got[4] == pytest.approx(1.0, abs=1e-6)


def test_numba_and_torch_engines_agree() -> None:
    rng = np.random.default_rng(3)
    x = structured(rng, 13, 20, 23)
    a = nearest_ssim(x, engine="numba", block=5)
    b = nearest_ssim(x, engine="torch", block=4)
    c = nearest_ssim(x, engine="numba", block=64)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-12)


def test_stats_cache_eviction_does_not_change_values() -> None:
    rng = np.random.default_rng(4)
    x = structured(rng, 10, 16, 16)
    full = nearest_ssim(x, block=3)
    tiny_cache = nearest_ssim(x, block=3, stats_cache_bytes=1)
    np.testing.assert_array_equal(full, tiny_cache)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 6),
    h=st.integers(11, 22),
    w=st.integers(11, 22),
    block=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_property_engine_equals_pairwise_reference(n: int, h: int, w: int, block: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = structured(rng, n, h, w)
    ref = np.full(n, -np.inf)
    for a in range(n):
        for b in range(a + 1, n):
            s = ssim_pair(x[a], x[b])
            ref[a], ref[b] = max(ref[a], s), max(ref[b], s)
    np.testing.assert_allclose(nearest_ssim(x, block=block), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(nearest_ssim(x, block=block, engine="torch"), ref, rtol=0, atol=1e-5)


@given(n=st.integers(1, 40), block=st.integers(1, 9))
def test_tiles_cover_each_pair_once(n: int, block: int) -> None:
    seen: dict[tuple[int, int], int] = {}
    for i0, i1, j0, j1 in _tiles(n, block):
        for a in range(i0, i1):
            for b in range(j0, j1):
                if (i0 == j0 and b <= a):
                    continue
                key = (min(a, b), max(a, b))
                seen[key] = seen.get(key, 0) + 1
    assert len(seen) == n * (n - 1) // 2 and set(seen.values()) <= {1}


def test_progress_reports_all_pairs() -> None:
    calls: list[tuple[int, int]] = []
    x = structured(np.random.default_rng(5), 7, 12, 12)
    nearest_ssim(x, block=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (21, 21)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((1, 1, 16, 16), np.float32), "at least 2"),
        (np.zeros((3, 2, 16, 16), np.float32), "single-channel"),
        (np.full((3, 1, 16, 16), np.nan, np.float32), "NaN"),
        (np.zeros((3, 1, 16, 8), np.float32), "11x11"),
    ],
)
def test_nearest_rejects_bad_input(bad: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        nearest_ssim(bad)


def test_numba_kernels_leave_torch_thread_count_alone():
    """numba's OpenMP layer shares libgomp with torch: the first nearest-SSIM call of a process
    must not leave torch running on every core (it made training after an evaluation ~4x slower
    on a shared CPU). A fresh interpreter, since numba touches the count only when it starts."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: numba cannot raise the thread count")
    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from genbench.metrics.ssim import nearest_ssim, nearest_ssim_cross\n"
        "x = np.random.default_rng(0).uniform(-1, 1, (12, 1, 16, 16)).astype(np.float32)\n"
        "nearest_ssim(x, engine='numba'); a = torch.get_num_threads()\n"
        "nearest_ssim_cross(x[:6], x[6:], engine='numba'); b = torch.get_num_threads()\n"
        "print(a, b)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "1"]
