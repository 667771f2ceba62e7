"""FDS (feature distribution similarity): KL between Gaussians fitted to a joint t-SNE embedding.

Real and synthetic images are embedded together (the embedding must be joint: two separate
t-SNE maps have unrelated coordinates) into 2-D with openTSNE (Barnes-Hut gradients below 10,000
points, FFT-interpolated above, openTSNE's own rule), after flattening the pixels and
reducing them to ``pca_dims`` principal components. One Gaussian is fitted to the real points
and one to the synthetic points (sample mean, covariance with ddof=1), and FDS is the closed
form ``KL(N_real || N_synth)`` in nats. Lower is better. t-SNE is stochastic: the embedding is
repeated for each seed in ``seeds`` and FDS is the mean over seeds, with their std (ddof=0).

The PCA is computed once and shared by the seed repeats: a randomised range finder (Halko et al.
2011) in float32 with ``pca_iters`` QR-normalised power iterations, centred implicitly (no
centred copy of the pixels is ever made) and seeded by ``pca_seed``, so peak memory stays close
to the decoded pixels themselves.

Confidence interval (``fds_replicates``): a two-level bootstrap over the cached embeddings.
Replicate i draws the t-SNE seeds with replacement (SEEDS stream of ``genbench.stats``) and the
real and synthetic images with replacement (REAL/SYNTH streams; the same images for every drawn
seed), refits the two Gaussians to the resampled points of each drawn seed's embedding and
averages the KLs as the value does. The embeddings are not recomputed, so the interval is
conditional on them; with a single seed the t-SNE randomness is not part of the interval
(``params["ci_seed_level"]`` says so).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from genbench.errors import InputError, UsageError
from genbench.metrics.result import MetricResult
from genbench.metrics.ssim import all_finite

Progress = Callable[[int, int], None]
"""Called as ``progress(steps_done, steps_total)``: the PCA is one step, each seed one."""

MIN_POINTS_PER_SET = 3  # a 2-D covariance needs at least 3 points to be non-singular


def gaussian_kl(
    mu_p: np.ndarray, cov_p: np.ndarray, mu_q: np.ndarray, cov_q: np.ndarray
) -> float:
    """KL(N(mu_p, cov_p) || N(mu_q, cov_q)) in nats, computed in float64.

    ``0.5 * (tr(S_q^-1 S_p) + (m_q - m_p)^T S_q^-1 (m_q - m_p) - k + ln(det S_q / det S_p))``.
    """
    mp = np.atleast_1d(np.asarray(mu_p, dtype=np.float64))
    mq = np.atleast_1d(np.asarray(mu_q, dtype=np.float64))
    sp = np.atleast_2d(np.asarray(cov_p, dtype=np.float64))
    sq = np.atleast_2d(np.asarray(cov_q, dtype=np.float64))
    k = mp.shape[0]
    if mq.shape != (k,) or sp.shape != (k, k) or sq.shape != (k, k):
        raise UsageError(
            f"gaussian_kl: shapes disagree: mu_p {mp.shape}, cov_p {sp.shape}, mu_q {mq.shape}, "
            f"cov_q {sq.shape}"
        )
    sign_p, logdet_p = np.linalg.slogdet(sp)
    sign_q, logdet_q = np.linalg.slogdet(sq)
    if sign_p <= 0 or sign_q <= 0:
        raise InputError("gaussian_kl: a covariance matrix is not positive definite")
    diff = mq - mp
    trace = float(np.trace(np.linalg.solve(sq, sp)))
    maha = float(diff @ np.linalg.solve(sq, diff))
    return 0.5 * (trace + maha - k + logdet_q - logdet_p)


def _flat(x: Any, what: str) -> np.ndarray:
    """(N, 1, H, W) tensor/array or ImageSet -> (N, H*W) float32, a view where possible."""
    x = x.images if hasattr(x, "images") else x
    if isinstance(x, torch.Tensor):
        arr = x.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(x, dtype=np.float32)
    if arr.ndim < 2:
        raise InputError(f"expected a stack of images (N, 1, H, W), got shape {arr.shape}", what)
    arr = np.ascontiguousarray(arr.reshape(arr.shape[0], -1))
    if arr.shape[0] < MIN_POINTS_PER_SET:
        raise InputError(
            f"FDS needs at least {MIN_POINTS_PER_SET} images per set to fit a 2-D Gaussian, "
            f"got {arr.shape[0]}",
            what,
        )
    if not all_finite(arr):
        raise InputError("images contain NaN or Inf values", what)
    return arr


def _orthonormal(a: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(a)
    return q


def randomized_pca(
    blocks: Sequence[np.ndarray], n_components: int, *, n_iter: int = 4, oversample: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Principal-component scores of the rows of ``vstack(blocks)`` without stacking or centring
    a copy. Returns (n, n_components) float32 with a deterministic sign per component."""
    n = sum(b.shape[0] for b in blocks)
    d = blocks[0].shape[1]
    mean64 = sum(b.sum(axis=0, dtype=np.float64) for b in blocks) / n
    mean = mean64.astype(np.float32)
    k = min(n_components, n - 1, d)
    width = min(k + oversample, n, d)
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((d, width), dtype=np.float32)

    def times(v: np.ndarray) -> np.ndarray:  # (X - 1 m^T) v, (n, width)
        mv = mean @ v
        return np.vstack([b @ v - mv for b in blocks])

    def times_t(u: np.ndarray) -> np.ndarray:  # (X - 1 m^T)^T u, (d, width)
        rows = np.cumsum([0] + [b.shape[0] for b in blocks])
        out = sum(b.T @ u[rows[i] : rows[i + 1]] for i, b in enumerate(blocks))
        return out - np.outer(mean, u.sum(axis=0))

    q = _orthonormal(times(omega))
    for _ in range(n_iter):
        q = _orthonormal(times(_orthonormal(times_t(q))))
    b_t = times_t(q)  # (d, width) = B^T with B = Q^T Xc
    # SVD of the small B through its Gram matrix, in float64.
    gram = b_t.T.astype(np.float64) @ b_t.astype(np.float64)
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1][:k]
    u_b = evecs[:, order]
    scores = q.astype(np.float64) @ u_b * np.sqrt(np.maximum(evals[order], 0.0))
    # Deterministic signs: the largest-magnitude score of each component is positive.
    idx = np.argmax(np.abs(scores), axis=0)
    signs = np.sign(scores[idx, np.arange(scores.shape[1])])
    signs[signs == 0] = 1.0
    return (scores * signs).astype(np.float32)


SMALL_N_SINGLE_THREAD = 2000


def _default_jobs(n_points: int | None = None) -> int:
    """All cores, except one thread for small embeddings: there openTSNE's per-iteration thread
    barriers cost more than they save (80 points took 15 s with 2 threads on a busy 2-core
    machine, 1 s with one)."""
    if n_points is not None and n_points < SMALL_N_SINGLE_THREAD:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def resolve_gradient_method(method: str, n: int) -> str:
    """openTSNE's own "auto" rule, resolved here so that params record what ran."""
    if method == "auto":
        return "bh" if n < 10_000 else "fft"
    if method not in ("bh", "fft"):
        raise UsageError(f"FDS: negative_gradient_method must be auto, bh or fft, got {method!r}")
    return method


def tsne_embed(
    features: np.ndarray, *, perplexity: float, seed: int, n_jobs: int,
    initialization: str = "pca", negative_gradient_method: str = "auto",
) -> np.ndarray:
    """openTSNE 2-D embedding of ``features``, float64 (n, 2)."""
    from openTSNE import TSNE

    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        initialization=initialization,
        negative_gradient_method=resolve_gradient_method(
            negative_gradient_method, features.shape[0]
        ),
        random_state=seed,
        n_jobs=n_jobs,
        verbose=False,
    )
    return np.asarray(tsne.fit(features), dtype=np.float64)


def fds_from_embedding(embedding: np.ndarray, n_real: int) -> float:
    """KL(N_real || N_synth) of Gaussians fitted to the rows (real rows first)."""
    e = np.asarray(embedding, dtype=np.float64)
    r, s = e[:n_real], e[n_real:]
    return gaussian_kl(r.mean(axis=0), np.cov(r, rowvar=False), s.mean(axis=0), np.cov(s, rowvar=False))


def _gaussian_kl_rows(mu_p: np.ndarray, cov_p: np.ndarray, mu_q: np.ndarray, cov_q: np.ndarray) -> np.ndarray:
    """``gaussian_kl`` for stacks of 2-D Gaussians (B, 2) / (B, 2, 2); NaN where a covariance is
    not positive definite."""
    sign_p, logdet_p = np.linalg.slogdet(cov_p)
    sign_q, logdet_q = np.linalg.slogdet(cov_q)
    diff = (mu_q - mu_p)[..., None]
    inv_q = np.linalg.inv(np.where((sign_q > 0)[:, None, None], cov_q, np.eye(2)))
    trace = np.einsum("bij,bji->b", inv_q, cov_p)
    maha = (np.swapaxes(diff, 1, 2) @ inv_q @ diff)[:, 0, 0]
    kl = 0.5 * (trace + maha - 2 + logdet_q - logdet_p)
    return np.where((sign_p > 0) & (sign_q > 0), kl, np.nan)


def _weighted_moments(points: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ddof=1 covariance of resamples given by count rows c (B, n) of points (n, 2)."""
    n = c.sum(axis=1, keepdims=True)
    mu = c @ points / n
    second = np.einsum("bn,ni,nj->bij", c, points, points)
    cov = (second - n[:, :, None] * mu[:, :, None] * mu[:, None, :]) / (n[:, :, None] - 1)
    return mu, cov


def fds_replicates(embeddings: Sequence[np.ndarray], n_real: int, boot: Any) -> np.ndarray:
    """Bootstrap replicates of FDS from the per-seed joint embeddings (real rows first); see the
    module docstring."""
    from genbench.stats import REAL, SEEDS, SYNTH, counts, replicate_rng

    embs = [np.asarray(e, dtype=np.float64) for e in embeddings]
    n_seeds = len(embs)
    n_synth = embs[0].shape[0] - n_real
    out = np.empty(boot.replicates)
    chunk = 256
    for start in range(0, boot.replicates, chunk):
        stop = min(boot.replicates, start + chunk)
        cr = counts(boot.indices(n_real, REAL, start, stop), n_real).astype(np.float64)
        cs = counts(boot.indices(n_synth, SYNTH, start, stop), n_synth).astype(np.float64)
        if n_seeds > 1:
            picks = np.stack([replicate_rng(boot.seed, i, SEEDS).integers(0, n_seeds, n_seeds)
                              for i in range(start, stop)])
        else:
            picks = np.zeros((stop - start, 1), dtype=np.int64)
        kls = np.empty((n_seeds, stop - start))
        for k, e in enumerate(embs):
            mr, sr = _weighted_moments(e[:n_real], cr)
            ms, ss = _weighted_moments(e[n_real:], cs)
            kls[k] = _gaussian_kl_rows(mr, sr, ms, ss)
        out[start:stop] = np.take_along_axis(kls.T, picks, axis=1).mean(axis=1)
    return out


def fds_ci_params(n_seeds: int) -> dict[str, Any]:
    return {"ci_seed_level": "t-SNE seeds resampled with replacement" if n_seeds > 1
            else "one t-SNE seed: seed-to-seed variation not included",
            "ci_conditional_on": "the t-SNE embeddings (points resampled, not re-embedded)"}


def compute_fds(
    real: torch.Tensor | np.ndarray,
    synth: torch.Tensor | np.ndarray,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    perplexity: float = 30.0,
    pca_dims: int = 50,
    n_jobs: int | None = None,
    pca_iters: int = 4,
    pca_seed: int = 0,
    initialization: str = "pca",
    negative_gradient_method: str = "auto",
    progress: Progress | None = None,
    boot: Any = None,
) -> MetricResult:
    """FDS between two canonical image sets (N, 1, H, W) (or ImageSets); see the module docstring.

    ``boot`` (a ``genbench.stats.Bootstrap``): adds a confidence interval.
    ``n_jobs``: openTSNE threads; None means one below 2,000 points, all cores above.
    Small sets: t-SNE needs ``3 * perplexity < n`` (n = n_real + n_synth); the perplexity is
    lowered to ``(n - 1) / 3`` when needed and ``params["perplexity"]`` holds the value used.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise UsageError("FDS: at least one seed is required")
    if pca_dims < 2:
        raise UsageError(f"FDS: pca_dims must be >= 2, got {pca_dims}")
    if not perplexity > 0:
        raise UsageError(f"FDS: perplexity must be > 0, got {perplexity}")
    t0 = time.perf_counter()
    xr, xs = _flat(real, "FDS real set"), _flat(synth, "FDS synthetic set")
    if xr.shape[1] != xs.shape[1]:
        raise InputError(
            f"FDS: real and synthetic images differ in size ({xr.shape[1]} vs {xs.shape[1]} pixels)"
        )
    nr, ns = xr.shape[0], xs.shape[0]
    n = nr + ns
    jobs = n_jobs if n_jobs is not None else _default_jobs(n)
    method = resolve_gradient_method(negative_gradient_method, n)
    steps = 1 + len(seeds)
    t_pca = time.perf_counter()
    features = randomized_pca([xr, xs], pca_dims, n_iter=pca_iters, seed=pca_seed)
    t_pca = time.perf_counter() - t_pca
    if progress is not None:
        progress(1, steps)
    perp_used = min(float(perplexity), (n - 1) / 3.0)
    values: list[float] = []
    embeddings: list[np.ndarray] = []
    for i, seed in enumerate(seeds):
        emb = tsne_embed(features, perplexity=perp_used, seed=seed, n_jobs=jobs,
                         initialization=initialization, negative_gradient_method=method)
        values.append(fds_from_embedding(emb, nr))
        embeddings.append(emb)
        if progress is not None:
            progress(2 + i, steps)
    params: dict[str, Any] = {
        "seeds": seeds,
        "perplexity": perp_used,
        "perplexity_requested": float(perplexity),
        "pca_dims": int(features.shape[1]),
        "pca_dims_requested": int(pca_dims),
        "pca": "randomized (float32, implicit centring, QR power iterations)",
        "pca_iters": int(pca_iters),
        "pca_seed": int(pca_seed),
        "input": "flattened pixels, canonical [-1, 1]",
        "tsne": "openTSNE, 2-D",
        "negative_gradient_method": method,
        "initialization": initialization,
        "covariance_ddof": 1,
        "std_ddof": 0,
        "kl": "KL(N_real || N_synth), nats",
        "n_jobs": int(jobs),
        "pca_elapsed_s": round(t_pca, 4),
    }
    res = MetricResult(
        name="fds",
        value=float(np.mean(values)),
        std=float(np.std(values)),
        params=params,
        n_real=nr,
        n_synth=ns,
        extra={"embedding": embeddings[0], "embeddings": embeddings, "per_seed": np.asarray(values)},
        json_extra=("per_seed",),
    )
    if boot is not None and boot.enabled:
        from genbench.stats import attach_ci

        attach_ci(res, fds_replicates(embeddings, nr, boot), boot, bounds=(0.0, None),
                  params=fds_ci_params(len(embeddings)))
    res.elapsed_s = time.perf_counter() - t0
    return res


def compute_fds_metric(ctx: Any) -> MetricResult:
    """Registry entry: FDS over ``options.fds_seeds`` t-SNE seeds starting at the evaluation's seed,
    with its two-level bootstrap CI."""
    opts = ctx.options
    seeds = tuple(range(ctx.seed, ctx.seed + opts.fds_seeds))
    with ctx.step("FDS", None) as step:
        return compute_fds(ctx.real.images, ctx.synth.images, seeds=seeds, perplexity=opts.fds_perplexity,
                           pca_dims=opts.fds_pca_dims, n_jobs=opts.n_jobs, progress=step.absolute,
                           boot=ctx.boot)
