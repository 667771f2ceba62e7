"""DS: histogram, smoothing, KL and its direction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from genbench.errors import UsageError
from genbench.metrics.ds import compute_ds, kl_divergence, smoothed_histogram


def images(seed: int, n: int, size: int = 16, blur: float = 1.5) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.standard_normal((n, size, size)), (0, blur, blur)) * 4
    return torch.from_numpy(np.clip(x, -1, 1).astype(np.float32))[:, None]


def test_kl_divergence_by_hand() -> None:
    p = np.array([0.5, 0.25, 0.25])
    q = np.array([0.25, 0.25, 0.5])
    hand = 0.5 * math.log(2) + 0.25 * math.log(1) + 0.25 * math.log(0.5)
    assert kl_divergence(p, q) == pytest.approx(hand, abs=1e-15)
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == math.inf


def test_smoothed_histogram_by_hand() -> None:
    vals = np.array([0.05, 0.15, 0.16, 0.95, 1.0 + 1e-8, -0.2])
    p, outside = smoothed_histogram(vals, bins=4, value_range=(0.0, 1.0), smoothing=1.0)
    # bins [0,.25) [.25,.5) [.5,.75) [.75,1]: counts 4 (incl. clipped -0.2), 0, 0, 2 (incl. 1+1e-8)
    np.testing.assert_allclose(p, np.array([5, 1, 1, 3]) / (6 + 4))
    assert outside == 2


def test_ds_of_a_set_with_itself_is_zero_and_records_params() -> None:
    x = images(0, 12)
    res = compute_ds(x, x.clone())
    assert res.value == 0.0
    assert res.params["bins"] == 50 and res.params["smoothing"] == 1.0
    assert res.params["value_range"] == [0.0, 1.0]
    out = json.loads(json.dumps(res.to_json()))
    assert len(out["nearest_ssim_real"]) == 12 and len(out["nearest_ssim_synth"]) == 12


def test_ds_direction_duplicates_raise_it() -> None:
    real = images(1, 16)
    similar = images(2, 16)
    # A collapsed generator: 4 distinct images, each repeated 4 times.
    collapsed = images(3, 4).repeat(4, 1, 1, 1)
    good = compute_ds(real, similar, bins=10)
    bad = compute_ds(real, collapsed, bins=10)
    np.testing.assert_allclose(bad.extra["nearest_ssim_synth"], 1.0, atol=1e-6)
    assert bad.value > good.value + 0.5
    # Nearest SSIMs come back in input order.
    x = images(4, 6)
    x[5] = x[2]
    res = compute_ds(x, real)
    near = res.extra["nearest_ssim_real"]
    assert near[2] == pytest.approx(1.0, abs=1e-6) and near[5] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.delete(near, [2, 5]) < 0.999)


def test_ds_progress_counts_both_sets() -> None:
    calls: list[tuple[int, int]] = []
    compute_ds(images(5, 5), images(6, 4), progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (10 + 6, 16)


@pytest.mark.parametrize("kw", [{"bins": 0}, {"smoothing": 0.0}, {"value_range": (1.0, 0.0)}])
def test_ds_rejects_bad_options(kw: dict) -> None:
    with pytest.raises(UsageError):
        compute_ds(images(0, 3), images(1, 3), **kw)
