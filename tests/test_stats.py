"""genbench.stats: bootstrap resampling, intervals, exact binomial intervals, paired tests, Holm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genbench import stats
from genbench.errors import UsageError


def test_replicates_do_not_depend_on_chunking_or_order() -> None:
    data = np.random.default_rng(0).normal(size=37)
    stat = lambda idx: float(data[idx].mean())
    whole = stats.bootstrap(stat, [37], replicates=50, seed=4)
    parts = np.concatenate([stats.bootstrap(stat, [37], replicates=13, seed=4, start=s)[: min(13, 50 - s)]
                            for s in range(0, 50, 13)])
    np.testing.assert_array_equal(whole, parts)
    backwards = [stats.bootstrap(stat, [37], replicates=1, seed=4, start=i)[0] for i in reversed(range(50))]
    np.testing.assert_array_equal(whole, backwards[::-1])
    boot = stats.Bootstrap(replicates=50, seed=4)
    np.testing.assert_array_equal(boot.indices(37, stats.REAL, 10, 20),
                                  np.stack([stats.resample(37, 4, i, stats.REAL) for i in range(10, 20)]))
    # streams and seeds give different draws; a different set size does not disturb another stream
    assert not np.array_equal(stats.resample(37, 4, 0, stats.REAL), stats.resample(37, 4, 0, stats.SYNTH))
    assert not np.array_equal(stats.resample(37, 4, 0, 0), stats.resample(37, 5, 0, 0))


def test_counts_match_bincount() -> None:
    idx = stats.Bootstrap(replicates=5, seed=1).indices(9, 0)
    c = stats.counts(idx, 9)
    assert c.shape == (5, 9) and (c.sum(1) == 9).all()
    for row, ix in zip(c, idx):
        np.testing.assert_array_equal(row, np.bincount(ix, minlength=9))


def test_percentile_ci_by_hand() -> None:
    reps = np.arange(101, dtype=float)  # quantiles 2.5 and 97.5 exactly, mean 50
    assert stats.percentile_ci(50.0, reps, 0.95) == pytest.approx((2.5, 97.5))
    # recentred: the bootstrap mean sits 10 above the estimate -> the interval moves down by 10
    assert stats.percentile_ci(40.0, reps, 0.95) == pytest.approx((-7.5, 87.5))
    assert stats.percentile_ci(40.0, reps, 0.95, recentre=False) == pytest.approx((2.5, 97.5))
    assert stats.percentile_ci(40.0, reps, 0.95, bounds=(0.0, 80.0)) == pytest.approx((0.0, 80.0))
    assert stats.percentile_ci(50.0, reps, 0.5) == pytest.approx((25.0, 75.0))
    # non-finite replicates are dropped; too few finite ones -> no interval
    with_nan = np.concatenate([reps, [np.nan, np.inf]])
    assert stats.percentile_ci(50.0, with_nan, 0.95) == pytest.approx((2.5, 97.5))
    assert stats.percentile_ci(1.0, np.array([np.nan, 1.0]), 0.95) is None


def test_binomial_ci_equals_scipy_exact() -> None:
    from scipy.stats import binomtest

    for k, n in ((0, 10), (3, 10), (10, 10), (47, 120), (1, 1)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        assert stats.binomial_ci(k, n, 0.9) == pytest.approx((ref.low, ref.high), abs=1e-12)
    with pytest.raises(UsageError):
        stats.binomial_ci(5, 3)


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(0.06, 1*0.04)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = stats.holm([0.02, math.nan])  # NaN is not part of the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def test_paired_pvalue_by_hand() -> None:
    # differences 1..5 (mean 3): centred -2, -1, 0, 1, 2; observed 1.5 -> |c| >= 1.5 for 2 of 5;
    # observed 0.5 -> 4 of 5
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.zeros(5)
    assert stats.paired_bootstrap_pvalue(1.5, a, 0.0, b) == pytest.approx((1 + 2) / 6)
    assert stats.paired_bootstrap_pvalue(0.5, a, 0.0, b) == pytest.approx((1 + 4) / 6)
    assert stats.paired_bootstrap_pvalue(10.0, a, 0.0, b) == pytest.approx(1 / 6)
    assert stats.paired_bootstrap_pvalue(0.0, a, 0.0, b) == 1.0
    with pytest.raises(ValueError):
        stats.paired_bootstrap_pvalue(0.0, a, 0.0, b[:3])


def _toy_replicates(real: np.ndarray, synth: np.ndarray, boot: stats.Bootstrap) -> tuple[float, np.ndarray]:
    """A toy metric |mean(synth) - mean(real)| with its bootstrap replicates (shared real stream)."""
    ir = boot.indices(len(real), stats.REAL)
    is_ = boot.indices(len(synth), stats.SYNTH)
    return abs(synth.mean() - real.mean()), np.abs(synth[is_].mean(1) - real[ir].mean(1))


def test_paired_test_level_and_power() -> None:
    rng = np.random.default_rng(0)
    boot = stats.Bootstrap(replicates=200, seed=3)
    null_p, alt_p = [], []
    for _ in range(60):
        real = rng.normal(size=150)
        a, b = rng.normal(0.2, 1, 150), rng.normal(0.2, 1, 150)
        c = rng.normal(0.7, 1, 150)
        va, ra = _toy_replicates(real, a, boot)
        vb, rb = _toy_replicates(real, b, boot)
        vc, rc = _toy_replicates(real, c, boot)
        null_p.append(stats.paired_bootstrap_pvalue(va, ra, vb, rb))
        alt_p.append(stats.paired_bootstrap_pvalue(va, ra, vc, rc))
    # equal models: rejections at 5% stay rare; a clearly worse model is nearly always detected
    assert np.mean(np.array(null_p) < 0.05) <= 0.12
    assert np.mean(np.array(alt_p) < 0.05) >= 0.9


def test_pairing_shares_the_real_resample() -> None:
    """The real set's noise cancels in the paired difference: two models measured against the same
    real set, differing by a small constant, are told apart although each CI is wide."""
    rng = np.random.default_rng(1)
    real = rng.normal(size=60)
    boot = stats.Bootstrap(replicates=400, seed=0)
    a = rng.normal(0.5, 0.05, 300)
    b = a + 0.08
    va, ra = _toy_replicates(real, a, boot)
    vb, rb = _toy_replicates(real, b, boot)
    ci_a = stats.percentile_ci(va, ra)
    assert ci_a[0] < vb < ci_a[1]  # unpaired intervals overlap...
    assert stats.paired_bootstrap_pvalue(va, ra, vb, rb) < 0.01  # ...the paired test still sees it


def test_compare_to_best_direction_and_marker() -> None:
    reps = {n: np.random.default_rng(i).normal(v, 0.1, 300)
            for i, (n, v) in enumerate([("a", 1.0), ("b", 3.0), ("c", 1.1)])}
    entries = {n: (float(r.mean()), r) for n, r in reps.items()}
    low = stats.compare_to_best("fid", entries, direction=-1)
    assert low.best == "a" and low.runner_up == "c"
    assert set(low.p) == {"b", "c"} and low.p["b"] < 0.01
    assert low.p_holm["c"] >= low.p["c"]
    high = stats.compare_to_best("is", entries, direction=+1)
    assert high.best == "b" and high.runner_up == "c" and high.significant
    # no replicates -> ranking only, never a marker
    bare = stats.compare_to_best("x", {"a": (1.0, None), "b": (2.0, None)}, direction=-1)
    assert bare.best == "a" and not bare.significant and math.isnan(bare.p["b"])
    assert stats.compare_to_best("x", {"a": (None, None)}, direction=-1).best is None


@pytest.mark.parametrize("kw", [{"replicates": -1}, {"level": 1.0}, {"level": 0.0}, {"seed": -2}])
def test_bootstrap_settings_rejected(kw: dict) -> None:
    with pytest.raises(UsageError):
        stats.Bootstrap(**kw)


def test_compare_to_best_applies_holm_to_the_runner_up() -> None:
    """Three rivals each at raw p = 0.03 (constructed: 2 of 99 centred differences reach the
    observed one): significant alone, not after Holm over three comparisons (3 x 0.03 = 0.09)."""
    z = np.linspace(-1.0, 1.0, 99)
    best = (0.0, np.zeros(99))
    rivals = {"b": (0.99, -z), "c": (0.995, -z), "d": (0.999, -z)}
    alone = stats.compare_to_best("fid", {"a": best, "b": rivals["b"]}, direction=-1)
    assert alone.p["b"] == pytest.approx(3 / 100) and alone.significant
    crowd = stats.compare_to_best("fid", {"a": best, **rivals}, direction=-1)
    assert crowd.runner_up == "b" and crowd.p["b"] == pytest.approx(0.03)
    assert crowd.p_holm["b"] == pytest.approx(0.09) and not crowd.significant
