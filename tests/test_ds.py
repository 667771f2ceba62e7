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


def test_epsilon_histogram_by_hand() -> None:
    vals = np.array([0.05, 0.15, 0.16, 0.95, 1.0 + 1e-8, -0.2])
    p, outside = smoothed_histogram(vals, bins=4, value_range=(0.0, 1.0), smoothing=0.01, estimator="epsilon")
    # frequencies 4/6, 0, 0, 2/6, each + 0.01, renormalised by 1 + 4 * 0.01
    np.testing.assert_allclose(p, (np.array([4 / 6, 0, 0, 2 / 6]) + 0.01) / 1.04, rtol=1e-15)
    assert outside == 2 and p.sum() == pytest.approx(1.0, abs=1e-15)


def test_estimators_by_hand_and_against_scipy_entropy() -> None:
    from scipy.stats import entropy

    real = np.array([0.1, 0.1, 0.3, 0.9])  # 2 bins on [0, 1]: counts 3, 1
    synth = np.array([0.2, 0.6, 0.7, 0.8, 0.9])  # counts 1, 4
    kw = {"bins": 2, "value_range": (0.0, 1.0)}
    p, _ = smoothed_histogram(real, smoothing=1.0, **kw)
    q, _ = smoothed_histogram(synth, smoothing=1.0, **kw)
    # Laplace: (3+1)/(4+2), (1+1)/(4+2) against (1+1)/(5+2), (4+1)/(5+2)
    hand = 4 / 6 * math.log((4 / 6) / (2 / 7)) + 2 / 6 * math.log((2 / 6) / (5 / 7))
    assert kl_divergence(p, q) == pytest.approx(hand, rel=1e-14)
    # epsilon: scipy.stats.entropy normalises p + eps and q + eps itself
    eps = 1e-6
    p, _ = smoothed_histogram(real, smoothing=eps, estimator="epsilon", **kw)
    q, _ = smoothed_histogram(synth, smoothing=eps, estimator="epsilon", **kw)
    ref = entropy(np.array([3 / 4, 1 / 4]) + eps, np.array([1 / 5, 4 / 5]) + eps)
    assert kl_divergence(p, q) == pytest.approx(ref, rel=1e-12)


def test_estimator_scales_laplace_capped_epsilon_reaches_paper_values() -> None:
    """Disjoint supports (830 real slices all in one bin, the synthetic ones all in another): Laplace
    caps DS near ln(n + bins) (~6.8), epsilon gives ~ln(1/epsilon) (23 nats), the scale of the
    paper's 14.95 and 17.26."""
    real, synth = np.full(830, 0.99), np.full(830, 0.01)
    lap = compute_ds_from(real, synth, "laplace")
    assert lap == pytest.approx(831 / 880 * math.log(831) + 48 / 880 * 0 + 1 / 880 * math.log(1 / 831), rel=1e-12)
    assert lap < math.log(830 + 1)
    eps = compute_ds_from(real, synth, "epsilon")
    assert 17.26 < eps == pytest.approx(math.log(1 / 1e-10), rel=1e-6)


def compute_ds_from(near_r: np.ndarray, near_s: np.ndarray, estimator: str) -> float:
    from genbench.metrics.ds import ds_from_nearest

    res = ds_from_nearest(near_r, near_s, estimator=estimator)
    assert res.params["estimator"] == estimator
    assert res.params["smoothing"] == (1.0 if estimator == "laplace" else 1e-10)
    return res.value


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


@pytest.mark.parametrize("kw", [{"bins": 0}, {"smoothing": 0.0}, {"value_range": (1.0, 0.0)},
                                {"estimator": "kde"}, {"estimator": "epsilon", "smoothing": -1e-9}])
def test_ds_rejects_bad_options(kw: dict) -> None:
    with pytest.raises(UsageError):
        compute_ds(images(0, 3), images(1, 3), **kw)
