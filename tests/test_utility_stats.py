"""Utility statistics: metrics against scikit-learn, bootstrap CIs against closed forms, the
paired randomisation test on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from genbench.utility import stats


def _probs(score: np.ndarray) -> np.ndarray:
    return np.stack([1 - score, score], axis=1)


def test_metrics_hand_computed():
    y = np.array([0, 0, 0, 1, 1])
    P = _probs(np.array([0.1, 0.6, 0.3, 0.8, 0.4]))
    m = stats.metrics(P, y)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(1 / 2)  # positives: 0.8 yes, 0.4 no
    assert m["specificity"] == pytest.approx(2 / 3)  # negatives: 0.1, 0.3 yes; 0.6 no
    # AUC: pairs (pos, neg) ordered correctly: 0.8 > all 3; 0.4 > 0.1, 0.3 -> 5 of 6
    assert m["auc"] == pytest.approx(5 / 6)


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_auc_equals_sklearn(ties):
    rng = np.random.default_rng(0)
    n = 60
    y = rng.integers(0, 2, n)
    score = rng.normal(size=n) + y
    if ties:
        score = np.round(score, 0)
    W = rng.integers(0, 4, size=(5, n)).astype(float)
    got = stats.weighted_auc(score, y == 1, W)
    for b in range(len(W)):
        assert got[b] == pytest.approx(roc_auc_score(y, score, sample_weight=W[b]), abs=1e-12)
    rows = np.stack([score, -score, np.round(score * 3)])
    ref = [roc_auc_score(y, r) for r in rows]
    np.testing.assert_allclose(stats.rank_auc_rows(rows, y == 1), ref, atol=1e-12)


def test_multiclass_auc_is_macro_one_vs_rest():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3)) + np.eye(3)[y] * 1.5
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = stats.metrics(P, y)
    assert m["auc"] == pytest.approx(roc_auc_score(y, P, multi_class="ovr", average="macro"))
    assert m["sensitivity"] is None and m["specificity"] is None


def test_bootstrap_ci_matches_binomial_and_widens_for_clustered_patients():
    rng = np.random.default_rng(2)
    n = 300
    y = rng.integers(0, 2, n)
    correct = rng.uniform(size=n) < 0.8
    P = _probs(np.where(correct, y, 1 - y).astype(float) * 0.8 + 0.1)
    acc = stats.metrics(P, y)["accuracy"]
    se = np.sqrt(acc * (1 - acc) / n)
    indep = stats.Resampler(np.arange(n), 1, n_boot=4000, seed=0)
    ci = stats.summarise([P], y, indep, 0.95)["accuracy"]["ci"]
    assert ci[0] < acc < ci[1]
    assert (ci[1] - ci[0]) == pytest.approx(2 * 1.96 * se, rel=0.12)
    # The same outcomes repeated 3x per patient (follow-up images agree): as informative as
    # n/3 images, so the interval is ~sqrt(3) wider when patients are resampled as units.
    P3, y3 = np.repeat(P, 3, axis=0), np.repeat(y, 3)
    per_image = stats.Resampler(np.arange(3 * n), 1, n_boot=4000, seed=0)
    per_patient = stats.Resampler(np.repeat(np.arange(n), 3), 1, n_boot=4000, seed=0)
    w_img = np.diff(stats.summarise([P3], y3, per_image, 0.95)["accuracy"]["ci"])[0]
    w_pat = np.diff(stats.summarise([P3], y3, per_patient, 0.95)["accuracy"]["ci"])[0]
    assert w_pat / w_img == pytest.approx(np.sqrt(3), rel=0.2)


def test_seed_spread_enters_the_interval():
    y = np.tile([0, 1], 100)
    good = _probs(np.where(y == 1, 0.9, 0.1))  # accuracy 1.0
    bad = _probs(np.full(200, 0.9))  # accuracy 0.5
    res = stats.Resampler(np.arange(200), 2, n_boot=2000, seed=0)
    out = stats.summarise([good, bad], y, res, 0.95)["accuracy"]
    assert out["value"] == pytest.approx(0.75)
    assert out["per_seed"] == [1.0, 0.5] and out["std"] == pytest.approx(np.std([1, 0.5], ddof=1))
    # Resampling the seeds reaches both runs alone: the interval spans (almost) 0.5 to 1.0.
    assert out["ci"][0] <= 0.55 and out["ci"][1] >= 0.95


def test_paired_test_null_and_clear_difference():
    rng = np.random.default_rng(3)
    n = 120
    y = rng.integers(0, 2, n)
    groups = np.repeat(np.arange(40), 3)
    res = stats.Resampler(groups, 2, n_boot=1000, seed=0)
    a = [_probs(np.clip(y * 0.6 + rng.uniform(0, 0.4, n), 0, 1)) for _ in range(2)]
    same = stats.paired_test(a, a, y, groups, res, 0.95, n_perm=999)
    for m in stats.METRICS:
        assert same[m]["diff"] == 0.0 and same[m]["p_value"] == 1.0
    noise = [_probs(rng.uniform(size=n)) for _ in range(2)]
    worse = stats.paired_test(a, noise, y, groups, res, 0.95, n_perm=999)
    assert worse["accuracy"]["diff"] < -0.3
    assert worse["accuracy"]["p_value"] == pytest.approx(1 / 1000)
    assert worse["accuracy"]["ci"][1] < 0
    assert worse["auc"]["p_value"] < 0.01
    back = stats.paired_test(noise, a, y, groups, res, 0.95, n_perm=999)
    assert back["accuracy"]["diff"] == pytest.approx(-worse["accuracy"]["diff"])


def test_paired_p_value_under_the_null_is_not_small():
    # Two classifiers of equal skill with independent errors: p-values spread over (0, 1].
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 90)
    groups = np.arange(90)
    res = stats.Resampler(groups, 1, n_boot=200, seed=0)
    ps = []
    for _ in range(30):
        a = _probs(np.where(rng.uniform(size=90) < 0.75, y, 1 - y) * 0.8 + 0.1)
        b = _probs(np.where(rng.uniform(size=90) < 0.75, y, 1 - y) * 0.8 + 0.1)
        ps.append(stats.paired_test([a], [b], y, groups, res, 0.95, n_perm=199)["accuracy"]["p_value"])
    ps = np.array(ps)
    assert (ps < 0.05).mean() <= 0.2
    assert 0.3 < np.median(ps) < 0.75
