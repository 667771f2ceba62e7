"""FDS is KL(N_real || N_synth), not the reverse: checked on hand-built embeddings, against an
independent Monte-Carlo KL, and end to end through the t-SNE path (which rows are real)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genbench.metrics.fds import compute_fds, fds_from_embedding, gaussian_kl


def _exact(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """Points whose sample mean and (ddof=1) covariance are exactly ``mean`` and ``cov``."""
    z = np.random.default_rng(seed).normal(size=(n, 2))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return z @ np.linalg.cholesky(cov).T + mean


def test_fds_from_embedding_is_kl_real_to_synth_by_hand() -> None:
    # real N(0, I), synthetic N((1, 0), 4 I): the two directions differ by a lot.
    real = _exact(40, np.zeros(2), np.eye(2), 0)
    synth = _exact(25, np.array([1.0, 0.0]), 4 * np.eye(2), 1)
    forward = 0.5 * (2 * 0.25 + 1 / 4 - 2 + math.log(16))   # KL(real || synth)
    backward = 0.5 * (2 * 4 + 1 - 2 - math.log(16))         # KL(synth || real)
    got = fds_from_embedding(np.vstack([real, synth]), 40)
    assert got == pytest.approx(forward, rel=1e-10)
    assert abs(got - backward) > 1.0


def _mc_kl(p_pts: np.ndarray, q_pts: np.ndarray, n: int = 400_000) -> float:
    """KL between the Gaussians fitted to two point sets, by Monte Carlo with scipy's densities
    (independent of gaussian_kl's closed form)."""
    from scipy.stats import multivariate_normal

    p = multivariate_normal(p_pts.mean(0), np.cov(p_pts, rowvar=False))
    q = multivariate_normal(q_pts.mean(0), np.cov(q_pts, rowvar=False))
    x = p.rvs(size=n, random_state=np.random.default_rng(0))
    return float(np.mean(p.logpdf(x) - q.logpdf(x)))


def test_gaussian_kl_against_monte_carlo_in_both_directions() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(60, 2)) @ np.array([[2.0, 0.3], [0.0, 0.5]])
    b = rng.normal(size=(50, 2)) @ np.array([[0.7, 0.0], [0.4, 1.5]]) + [0.5, -1.0]
    for p, q in ((a, b), (b, a)):
        closed = gaussian_kl(p.mean(0), np.cov(p, rowvar=False), q.mean(0), np.cov(q, rowvar=False))
        assert closed == pytest.approx(_mc_kl(p, q), rel=0.02)
    assert abs(fds_from_embedding(np.vstack([a, b]), 60) - fds_from_embedding(np.vstack([b, a]), 50)) > 0.5


def _images(n: int, seed: int, spread: float, shift: float = 0.0) -> torch.Tensor:
    basis = np.random.default_rng(99).standard_normal((3, 144)) * 0.4
    z = np.random.default_rng(seed).standard_normal((n, 3)) * spread
    return torch.from_numpy(np.tanh(z @ basis + shift).reshape(n, 1, 12, 12).astype(np.float32))


def test_compute_fds_scores_real_rows_against_synthetic_rows() -> None:
    """End to end: a narrow synthetic set (mode collapse) against a broad real one. The embedding's
    first n_real rows must be the real images, and the value KL(real || synth) of those rows."""
    real = _images(45, 0, spread=1.0)
    synth = _images(30, 1, spread=0.25, shift=0.3)
    res = compute_fds(real, synth, seeds=(0,), n_jobs=1, perplexity=10)
    emb = res.extra["embedding"]
    r, s = emb[:45], emb[45:]
    forward = gaussian_kl(r.mean(0), np.cov(r, rowvar=False), s.mean(0), np.cov(s, rowvar=False))
    backward = gaussian_kl(s.mean(0), np.cov(s, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    assert res.value == pytest.approx(forward, rel=1e-9)
    assert res.value == pytest.approx(_mc_kl(r, s), rel=0.05)
    assert forward > 2 * backward  # the directions are far apart here, so a swap cannot pass
    # The rows are in input order: the synthetic (collapsed) rows are the tight cluster.
    assert np.linalg.det(np.cov(s, rowvar=False)) < 0.5 * np.linalg.det(np.cov(r, rowvar=False))
    swapped = compute_fds(synth, real, seeds=(0,), n_jobs=1, perplexity=10)
    assert abs(swapped.value - res.value) > 0.3 * res.value


def test_embedding_rows_are_real_first_in_input_order() -> None:
    """Two unlike sets of different sizes form two clusters: the first n_real rows of the joint
    embedding must be exactly one of them (a real/synthetic stacking swap mixes them)."""
    real = _images(40, 2, spread=0.6, shift=-1.0)
    synth = _images(25, 3, spread=0.6, shift=1.0)
    res = compute_fds(real, synth, seeds=(0,), n_jobs=1, perplexity=8)
    emb = res.extra["embedding"]
    r, s = emb[:40], emb[40:]
    centre = r.mean(0)
    assert np.linalg.norm(r - centre, axis=1).max() < np.linalg.norm(s - centre, axis=1).min()
    centre = s.mean(0)
    assert np.linalg.norm(s - centre, axis=1).max() < np.linalg.norm(r - centre, axis=1).min()
