"""IS / FID / KID / precision-recall: against torch-fidelity (formulas and end to end) and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

try:
    from _inception_fixtures import inception_material
except ImportError:
    from tests._inception_fixtures import inception_material  # noqa: F401

from genbench.metrics import fidelity as fd
from genbench.metrics.inception import InceptionFeatures


def _feats(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ a + shift).astype(np.float32)


# --- formulas against torch-fidelity's own functions, on synthetic features ------------------

def test_inception_score_equals_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = 3 * _feats(57, 30, 0)  # 57: splits of unequal size
    for seed in (0, 2020):
        ref = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=seed)
        mean, std = fd.inception_score(logits, splits=10, seed=seed)
        assert mean == pytest.approx(ref["inception_score_mean"], abs=1e-9)
        assert std == pytest.approx(ref["inception_score_std"], abs=1e-9)
    assert mean > 1.5


def test_fid_equals_torch_fidelity_full_and_low_rank():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    for n1, n2, d in ((300, 250, 24), (15, 20, 64)):  # n > d, and n < d (singular covariances)
        a, b = _feats(n1, d, 1), _feats(n2, d, 2, shift=0.3)
        ref = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(a)),
                                       fid_features_to_statistics(torch.from_numpy(b)), False)
        ref = ref["frechet_inception_distance"]
        assert fd.frechet_distance(a, b) == pytest.approx(ref, rel=1e-7)


def test_kid_equals_torch_fidelity_with_subsampling():
    from torch_fidelity.metric_kid import kid_features_to_metric

    s, r = _feats(60, 40, 3, shift=0.2), _feats(50, 40, 4)
    ref = kid_features_to_metric(torch.from_numpy(s), torch.from_numpy(r), kid_subsets=20, kid_subset_size=25,
                                 rng_seed=7, verbose=False)
    mean, std = fd.kernel_inception_distance(s, r, subsets=20, subset_size=25, seed=7)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], abs=1e-6)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], abs=1e-6)
    assert abs(mean) > 1e-3  # a real difference was measured, not 0 == 0


def test_precision_recall_equal_torch_fidelity():
    from torch_fidelity.metric_prc import prc_features_to_metric

    s, r = _feats(70, 16, 5, shift=0.4), _feats(60, 16, 6)
    ref = prc_features_to_metric(torch.from_numpy(s), torch.from_numpy(r), prc_neighborhood=3,
                                 prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    p, rc = fd.precision_recall(s, r)
    assert p == pytest.approx(ref["precision"], abs=1e-7) and rc == pytest.approx(ref["recall"], abs=1e-7)
    assert 0 < p < 1 and 0 < rc < 1


# --- closed forms -----------------------------------------------------------------------------

def _exact_moments(n, mean, cov, seed):
    """Samples whose sample mean and (unbiased) sample covariance are exactly ``mean`` and ``cov``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return z @ np.linalg.cholesky(cov).T + mean


def test_fid_identical_sets_is_zero():
    a = _feats(40, 64, 8)
    assert abs(fd.frechet_distance(a, a)) < 1e-6
    a = _feats(400, 32, 9)
    assert abs(fd.frechet_distance(a, a)) < 1e-6


def test_fid_of_gaussians_with_known_moments():
    d = 6
    mu1, mu2 = np.arange(d, dtype=float), np.arange(d, dtype=float)[::-1] * 0.5
    v1, v2 = np.linspace(0.5, 3.0, d), np.linspace(2.0, 0.1, d)
    a = _exact_moments(500, mu1, np.diag(v1), 0)
    b = _exact_moments(400, mu2, np.diag(v2), 1)
    analytic = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert fd.frechet_distance(a, b) == pytest.approx(analytic, rel=1e-10)
    # non-commuting covariances: against scipy's sqrtm
    rng = np.random.default_rng(3)
    m1, m2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(d), m2 @ m2.T + 0.1 * np.eye(d)
    a, b = _exact_moments(300, mu1, s1, 2), _exact_moments(300, mu2, s2, 3)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert fd.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_small_sets_adapt_and_record_parameters():
    s = InceptionFeatures(_feats(8, 2048, 1), 3 * _feats(8, 1008, 2))
    r = InceptionFeatures(_feats(12, 2048, 3), 3 * _feats(12, 1008, 4))
    out = fd.metrics_from_features(s, r, metrics={"is", "fid", "kid", "precision", "recall"})
    assert all(v.status == "ok" for v in out.values()), {k: v.reason for k, v in out.items()}
    assert out["kid"].params["subset_size"] == 8 and "subset_size_adapted" in out["kid"].params
    assert out["is"].params["splits"] == 4 and "splits_adapted" in out["is"].params
    tiny = InceptionFeatures(_feats(3, 2048, 1), _feats(3, 1008, 2))
    out = fd.metrics_from_features(tiny, r, metrics={"precision", "recall"})
    assert out["precision"].status == "unavailable" and "more than 3 images" in out["precision"].reason


# --- end to end: the same PNG folders through torch-fidelity and through genbench -------------

@pytest.fixture(scope="module")
def both(inception_material):
    import torch_fidelity

    from genbench.io import read_image_folder
    from genbench.metrics.pipeline import EvalOptions, evaluate

    m = inception_material
    ref = torch_fidelity.calculate_metrics(
        input1=str(m.synth_dir), input2=str(m.real_dir), cuda=False, isc=True, fid=True, kid=True, prc=True,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(m.weights),
        feature_layer_prc="2048", kid_subset_size=min(len(m.real_u8), len(m.synth_u8)), rng_seed=0,
        cache=False, verbose=False, save_cpu_ram=True, batch_size=20)
    opts = EvalOptions(metrics=("is", "fid", "kid", "precision", "recall"), inception_weights=m.weights,
                       device="cpu", seed=0, cache_dir=m.cache_dir, batch_size=20)
    report = evaluate(read_image_folder(m.real_dir), read_image_folder(m.synth_dir), opts)
    return ref, report


def test_end_to_end_equals_torch_fidelity_on_png_folders(both):
    ref, report = both
    got = {k: r.value for k, r in report.metrics.items() if r.status == "ok"}
    assert set(got) == {"is", "fid", "kid", "precision", "recall"}
    fid_ref = ref["frechet_inception_distance"]
    assert fid_ref > 1.0  # the sets differ measurably
    assert abs(got["fid"] - fid_ref) <= 1e-5 * fid_ref
    assert got["is"] == pytest.approx(ref["inception_score_mean"], abs=1e-4)
    assert report.metrics["is"].std == pytest.approx(ref["inception_score_std"], abs=1e-4)
    assert ref["inception_score_mean"] > 1.2
    assert got["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], abs=1e-4)
    # torch-fidelity returns float32 fractions; the counts must be equal
    n = len(report.metrics["precision"].params) and report.synth.n
    assert round(got["precision"] * n) == round(ref["precision"] * n)
    assert round(got["recall"] * report.real.n) == round(ref["recall"] * report.real.n)
    assert 0 < got["precision"] < 1 or 0 < got["recall"] < 1  # not a trivial 1 == 1
    assert report.metrics["kid"].params["subset_size"] == 20
