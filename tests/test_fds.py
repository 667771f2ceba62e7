"""FDS: closed-form Gaussian KL, the shared PCA, and the metric's behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from genbench.errors import InputError
from genbench.metrics.fds import compute_fds, gaussian_kl, randomized_pca


def test_gaussian_kl_one_dimensional_by_hand() -> None:
    # KL(N(0, 1) || N(1, 4)) = ln(2) + (1 + 1) / (2 * 4) - 1/2
    hand = math.log(2.0) + 2.0 / 8.0 - 0.5
    assert gaussian_kl(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(hand, abs=1e-14)


def test_gaussian_kl_two_dimensional_by_hand() -> None:
    mp, sp = np.array([0.0, 0.0]), np.array([[2.0, 0.0], [0.0, 1.0]])
    mq, sq = np.array([1.0, 2.0]), np.array([[1.0, 0.0], [0.0, 4.0]])
    # tr(Sq^-1 Sp) = 2 + 1/4; maha = 1 + 4/4; ln det = ln 4 - ln 2
    hand = 0.5 * (2.25 + 2.0 - 2 + math.log(2.0))
    assert gaussian_kl(mp, sp, mq, sq) == pytest.approx(hand, abs=1e-14)
    assert gaussian_kl(mp, sp, mp, sp) == pytest.approx(0.0, abs=1e-14)
    assert gaussian_kl(mq, sq, mp, sp) != pytest.approx(hand)  # not symmetric


def test_randomized_pca_matches_exact_pca() -> None:
    rng = np.random.default_rng(0)
    rot = np.linalg.qr(rng.standard_normal((300, 300)))[0]
    x = (rng.standard_normal((200, 300)) * 10 * 0.8 ** np.arange(300)) @ rot + 3.0
    x = x.astype(np.float32)
    ours = randomized_pca([x[:70], x[70:]], 8)
    ref = PCA(8, svd_solver="full").fit_transform(x.astype(np.float64))
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=1e-3 * np.abs(ref).max())
    # Splitting the rows differently changes nothing.
    np.testing.assert_allclose(randomized_pca([x], 8), ours, atol=1e-4 * np.abs(ref).max())


def blobs(seed: int, n: int, shift: float = 0.0) -> torch.Tensor:
    """Images from one fixed low-rank distribution (the same for every seed), optionally shifted."""
    basis = np.random.default_rng(1234).standard_normal((4, 256)) * 0.3
    z = np.random.default_rng(seed).standard_normal((n, 4))
    x = np.tanh(z @ basis + shift)
    return torch.from_numpy(x.reshape(n, 1, 16, 16).astype(np.float32))


def test_fds_same_distribution_small_shifted_large_and_deterministic() -> None:
    real = blobs(0, 40)
    same = compute_fds(real, blobs(1, 40), seeds=(0,), n_jobs=1)
    shifted = compute_fds(real, blobs(2, 40, shift=0.6), seeds=(0,), n_jobs=1)
    assert same.value < 1.0
    assert shifted.value > 10 * same.value + 1.0
    again = compute_fds(real, blobs(1, 40), seeds=(0,), n_jobs=1)
    assert again.value == same.value
    np.testing.assert_array_equal(again.extra["embedding"], same.extra["embedding"])
    assert same.extra["embedding"].shape == (80, 2)
    assert same.params["negative_gradient_method"] == "bh"


def test_fds_small_sets_adapt_perplexity_and_report_seeds() -> None:
    res = compute_fds(blobs(0, 8), blobs(1, 7), seeds=(0, 1), n_jobs=1)
    assert res.params["perplexity"] == pytest.approx(14 / 3)
    assert res.params["perplexity_requested"] == 30.0
    assert res.params["pca_dims"] == 14  # at most n - 1 components
    assert len(res.extra["per_seed"]) == 2
    assert res.std == pytest.approx(np.std(res.extra["per_seed"]))


def test_fds_rejects_too_few_images() -> None:
    with pytest.raises(InputError, match="at least 3"):
        compute_fds(blobs(0, 2), blobs(1, 10))


def test_fds_rejects_non_finite_and_mismatched_sizes() -> None:
    bad = blobs(0, 6)
    bad[2, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        compute_fds(bad, blobs(1, 6))
    with pytest.raises(InputError, match="differ in size"):
        compute_fds(blobs(0, 6), blobs(1, 6)[:, :, :8, :8].contiguous())
