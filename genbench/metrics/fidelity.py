"""IS, FID, KID and precision/recall on Inception-v3 features, as torch-fidelity defines them.

Two backends compute the same numbers:

- ``"genbench"`` (default): features from :class:`~genbench.metrics.inception.InceptionFeatureExtractor`
  (fast, cached) and the formulas below, written against torch-fidelity 0.4's definitions and
  checked against it in the tests;
- ``"torch-fidelity"``: the images are handed to ``torch_fidelity.calculate_metrics`` in memory
  (uint8, grayscale replicated to RGB), the reference implementation.

Conventions follow torch-fidelity: input1 is the synthetic set, input2 the real one. IS is the
synthetic set's; precision is the fraction of synthetic samples inside the real manifold, recall
the fraction of real samples inside the synthetic one. Precision/recall use the Inception pool3
features (torch-fidelity's own default for ``prc`` is VGG-16, whose weights are not available
here; the backbone is recorded in ``params``).

Seeds: IS (split shuffling) and KID (subset draws) use torch-fidelity's default seed, 2020
(``TF_SEED``), unless a seed is given, so that a default genbench value equals a default
``torch_fidelity.calculate_metrics`` value on the same images and weights.

Confidence intervals (``*_replicates``, see ``genbench.stats``) resample images and recompute from
cached per-image quantities:

- IS: the synthetic logits (the same split shuffling per replicate);
- FID: the pool3 features of both sets; each replicate's covariances are handled through Gram
  matrices of the resampled images, so the matrix square root is an SVD of a k x k matrix (k the
  number of distinct resampled images, about 0.63 N) instead of 2048 x 2048;
- KID: the unbiased polynomial-kernel MMD^2 over all images of the resampled sets (the quantity
  whose subset average KID reports), from kernel matrices computed once;
- precision/recall: each image's inside-the-other-manifold indicator, with the manifolds (k-NN
  radii) of the full sets, i.e. conditional on the reference set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.metrics.inception import (
    InceptionFeatureExtractor,
    InceptionFeatures,
    file_sha256,
    load_inception_state_dict,
    resolve_inception_weights,
    to_uint8_gray,
)
from genbench.metrics.result import MetricResult

__all__ = [
    "compute_inception_metrics",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "kernel_inception_distance",
    "metrics_from_features",
    "precision_recall",
]

BACKBONE = "inception-v3-compat (torch-fidelity), pool3 2048-d / unbiased logits 1008-d"

# torch-fidelity 0.4 defaults, reproduced so that the values are comparable.
TF_SEED = 2020  # torch-fidelity's default rng_seed: IS split shuffling and KID subsets
IS_SPLITS = 10
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE, KID_COEF0 = 3, 1.0
PRC_NEIGHBORHOOD = 3


class MetricInputError(GenbenchError):
    """A metric cannot be computed for these inputs (e.g. too few images); reported as unavailable."""


# ---------------------------------------------------------------------------------------------
# Formulas.


def inception_score(logits: np.ndarray, *, splits: int = IS_SPLITS, seed: int = TF_SEED,
                    shuffle: bool = True) -> tuple[float, float]:
    """Mean and std over ``splits`` of exp(E_x KL(p(y|x) || p(y))), rows shuffled with ``seed``."""
    n = len(logits)
    if n < 2 or n < splits:
        raise MetricInputError(f"IS needs at least max(2, splits={splits}) images, got {n}")
    z = torch.from_numpy(np.asarray(logits)).double()
    if shuffle:
        z = z[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    log_p = torch.log_softmax(z, dim=1)
    scores = _split_scores(log_p, log_p.exp(), splits)
    return float(np.mean(scores)), float(np.std(scores))


def _split_scores(log_p: torch.Tensor, p: torch.Tensor, splits: int) -> list[float]:
    n = len(p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        log_q = torch.log(p[lo:hi].mean(dim=0, keepdim=True))
        kl = (p[lo:hi] * (log_p[lo:hi] - log_q)).sum(dim=1).mean()
        scores.append(float(torch.exp(kl)))
    return scores


def is_replicates(logits: np.ndarray, boot: Any, *, splits: int = IS_SPLITS, seed: int = TF_SEED,
                  shuffle: bool = True) -> np.ndarray:
    """Bootstrap replicates of the IS mean: replicate i is ``inception_score`` of the synthetic
    rows ``boot``'s replicate i draws (SYNTH stream), shuffled and split exactly as the value.

    Per split, E_x KL(p_x || q) = mean_x(sum_k p_xk ln p_xk) - sum_k q_k ln q_k with q the split's
    mean p: the first term is a per-image constant computed once, so a replicate costs one
    gather-and-average of the probabilities.
    """
    from genbench.stats import SYNTH

    z = torch.from_numpy(np.asarray(logits)).double()
    n = len(z)
    log_p = torch.log_softmax(z, dim=1)
    p = log_p.exp()
    neg_entropy = (p * log_p).sum(dim=1).numpy()
    p = p.numpy()
    perm = np.random.RandomState(seed).permutation(n) if shuffle else np.arange(n)
    bounds = [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]
    out = np.empty(boot.replicates)
    for i in range(boot.replicates):
        rows = boot.indices(n, SYNTH, i, i + 1)[0][perm]
        scores = []
        for lo, hi in bounds:
            q = p[rows[lo:hi]].mean(axis=0)
            scores.append(np.exp(neg_entropy[rows[lo:hi]].mean() - float(q @ np.log(q))))
        out[i] = np.mean(scores)
    return out


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64)."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_factor(features: np.ndarray) -> np.ndarray:
    """A (d, k) matrix L with L L^T equal to the unbiased covariance, k = min(n - 1, d)-ish.

    With fewer samples than dimensions the centred data itself is the cheapest exact factor;
    otherwise the covariance's eigen-decomposition (negative round-off eigenvalues clipped).
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    centred = f - f.mean(axis=0)
    if n <= d:
        return centred.T / np.sqrt(n - 1)
    w, v = np.linalg.eigh(centred.T @ centred / (n - 1))
    return v * np.sqrt(np.clip(w, 0.0, None))


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), all in float64.

    Tr((S_a S_b)^(1/2)) is the sum of the singular values of L_a^T L_b for any factors
    S = L L^T: the eigenvalues of S_a S_b are those of (L_a^T L_b)(L_a^T L_b)^T. This avoids the
    non-symmetric eigenproblem (and its complex round-off) that sqrtm-based code solves.
    """
    a, b = np.asarray(feat_a, np.float64), np.asarray(feat_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise MetricInputError(f"FID needs at least 2 images per set, got {len(a)} and {len(b)}")
    la, lb = _psd_factor(a), _psd_factor(b)
    tr_cov = float((la * la).sum() + (lb * lb).sum())
    tr_sqrt = float(np.linalg.svd(la.T @ lb, compute_uv=False).sum())
    diff = a.mean(axis=0) - b.mean(axis=0)
    return float(diff @ diff + tr_cov - 2.0 * tr_sqrt)


def kernel_inception_distance(feat_synth: np.ndarray, feat_real: np.ndarray, *, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = TF_SEED,
                              degree: int = KID_DEGREE, coef0: float = KID_COEF0) -> tuple[float, float]:
    """Unbiased MMD^2 with the cubic polynomial kernel, mean/std over random subsets.

    Subsets are drawn exactly as torch-fidelity draws them (one RandomState; synthetic first).
    The Gram matrices are computed once on all features and indexed per subset.
    """
    x = np.asarray(feat_synth, dtype=np.float64)
    y = np.asarray(feat_real, dtype=np.float64)
    nx, ny = len(x), len(y)
    if subset_size < 2 or nx < subset_size or ny < subset_size:
        raise MetricInputError(
            f"KID subset size {subset_size} needs at least that many images per set (and >= 2); "
            f"got {nx} synthetic and {ny} real")
    gamma = 1.0 / x.shape[1]
    gxx, gyy, gxy = x @ x.T, y @ y.T, x @ y.T
    rng = np.random.RandomState(seed)
    m = subset_size
    mmds = np.empty(subsets)
    for i in range(subsets):
        ix = rng.choice(nx, m, replace=False)
        iy = rng.choice(ny, m, replace=False)
        kxx = (gxx[np.ix_(ix, ix)] * gamma + coef0) ** degree
        kyy = (gyy[np.ix_(iy, iy)] * gamma + coef0) ** degree
        kxy = (gxy[np.ix_(ix, iy)] * gamma + coef0) ** degree
        off_xx = kxx.sum() - np.trace(kxx)
        off_yy = kyy.sum() - np.trace(kyy)
        mmds[i] = (off_xx + off_yy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m)
    return float(mmds.mean()), float(mmds.std())


def fid_replicates(feat_real: np.ndarray, feat_synth: np.ndarray, boot: Any) -> np.ndarray:
    """Bootstrap replicates of FID (REAL and SYNTH streams of ``boot``), all in float64.

    For resample counts c (c_i = how often image i was drawn, n = sum c) the resample's mean is
    ``X^T c / n`` and its unbiased covariance factors as ``A^T A`` with rows
    ``A_i = sqrt(c_i) (x_i - mu) / sqrt(n - 1)`` over the k distinct drawn images. Every term of
    FID is then a function of the Gram matrices X_r X_r^T, X_s X_s^T, X_r X_s^T (computed once)
    and ``Tr((S_r S_s)^(1/2))`` is the nuclear norm of the k_r x k_s matrix ``A_r A_s^T``.
    """
    from genbench.stats import REAL, SYNTH

    r = np.asarray(feat_real, dtype=np.float64)
    s = np.asarray(feat_synth, dtype=np.float64)
    nr, ns = len(r), len(s)
    if nr < 2 or ns < 2:
        raise MetricInputError(f"FID needs at least 2 images per set, got {nr} and {ns}")
    centre = r.mean(axis=0)  # FID is translation invariant; centring keeps the Gram sums exact
    r, s = r - centre, s - centre
    grr, gss, grs = r @ r.T, s @ s.T, r @ s.T
    dr, ds = np.diag(grr).copy(), np.diag(gss).copy()
    out = np.empty(boot.replicates)
    for i in range(boot.replicates):
        cr = np.bincount(boot.indices(nr, REAL, i, i + 1)[0], minlength=nr).astype(np.float64)
        cs = np.bincount(boot.indices(ns, SYNTH, i, i + 1)[0], minlength=ns).astype(np.float64)
        ur, us = np.flatnonzero(cr), np.flatnonzero(cs)
        wr, ws = cr[ur], cs[us]
        g = grs[np.ix_(ur, us)]                      # x_r . x_s over distinct drawn images
        g_ms = g @ ws / ns                           # x_r . mu_s
        g_mr = wr @ g / nr                           # mu_r . x_s
        m_rs = float(wr @ g_ms) / nr                 # mu_r . mu_s
        m_rr = float(wr @ grr[np.ix_(ur, ur)] @ wr) / nr ** 2
        m_ss = float(ws @ gss[np.ix_(us, us)] @ ws) / ns ** 2
        tr_r = (float(wr @ dr[ur]) - nr * m_rr) / (nr - 1)
        tr_s = (float(ws @ ds[us]) - ns * m_ss) / (ns - 1)
        cross = (g - g_ms[:, None] - g_mr[None, :] + m_rs)
        cross *= np.sqrt(wr)[:, None]
        cross *= np.sqrt(ws)[None, :]
        nuclear = _nuclear_norm(cross) / np.sqrt((nr - 1) * (ns - 1))
        out[i] = m_rr + m_ss - 2.0 * m_rs + tr_r + tr_s - 2.0 * nuclear
    return out


def _nuclear_norm(m: np.ndarray) -> float:
    """Sum of singular values, as square roots of the eigenvalues of the smaller Gram matrix
    (symmetric eigenvalues: ~2x faster than an SVD; agrees with it to ~1e-10 relative here, since
    only near-zero singular values lose digits and those add near nothing)."""
    g = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(g), 0.0, None)).sum())


def kid_replicates(feat_synth: np.ndarray, feat_real: np.ndarray, boot: Any, *, degree: int = KID_DEGREE,
                   coef0: float = KID_COEF0) -> np.ndarray:
    """Bootstrap replicates of the unbiased MMD^2 over all images of the resampled sets.

    With resample counts c, the sum over ordered pairs of distinct *positions* of a kernel matrix K
    is ``c^T K c - c . diag(K)`` (a drawn duplicate pairs with its copy, not with itself), so each
    replicate is a few matrix-vector products on kernel matrices computed once.
    """
    from genbench.stats import REAL, SYNTH, counts

    x = np.asarray(feat_synth, dtype=np.float64)
    y = np.asarray(feat_real, dtype=np.float64)
    nx, ny = len(x), len(y)
    if nx < 2 or ny < 2:
        raise MetricInputError(f"KID needs at least 2 images per set, got {nx} and {ny}")
    gamma = 1.0 / x.shape[1]
    kxx = (x @ x.T * gamma + coef0) ** degree
    kyy = (y @ y.T * gamma + coef0) ** degree
    kxy = (x @ y.T * gamma + coef0) ** degree
    out = np.empty(boot.replicates)
    chunk = 128
    for start in range(0, boot.replicates, chunk):
        stop = min(boot.replicates, start + chunk)
        cx = counts(boot.indices(nx, SYNTH, start, stop), nx).astype(np.float64)
        cy = counts(boot.indices(ny, REAL, start, stop), ny).astype(np.float64)
        off_xx = ((cx @ kxx) * cx).sum(1) - cx @ np.diag(kxx)
        off_yy = ((cy @ kyy) * cy).sum(1) - cy @ np.diag(kyy)
        xy = ((cx @ kxy) * cy).sum(1)
        out[start:stop] = off_xx / (nx * (nx - 1)) + off_yy / (ny * (ny - 1)) - 2.0 * xy / (nx * ny)
    return out


def _pairwise_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return sq.clamp_min_(0.0).sqrt_()


def precision_recall(feat_synth: np.ndarray, feat_real: np.ndarray, *,
                     neighborhood: int = PRC_NEIGHBORHOOD) -> tuple[float, float]:
    """Improved precision/recall (Kynkaanniemi et al. 2019) with k-NN balls, k = ``neighborhood``.

    Precision: fraction of synthetic samples within the k-NN radius of some real sample;
    recall: fraction of real samples within the k-NN radius of some synthetic sample.
    Distances in float64.
    """
    in_real, in_synth = manifold_indicators(feat_synth, feat_real, neighborhood=neighborhood)
    return float(in_real.mean()), float(in_synth.mean())


def manifold_indicators(feat_synth: np.ndarray, feat_real: np.ndarray, *,
                        neighborhood: int = PRC_NEIGHBORHOOD) -> tuple[np.ndarray, np.ndarray]:
    """Per synthetic image: inside the real manifold (precision's terms); per real image: inside
    the synthetic manifold (recall's terms). Boolean arrays."""
    s = torch.from_numpy(np.asarray(feat_synth, np.float64))
    r = torch.from_numpy(np.asarray(feat_real, np.float64))
    if len(s) <= neighborhood or len(r) <= neighborhood:
        raise MetricInputError(
            f"precision/recall need more than {neighborhood} images per set, got {len(s)} and {len(r)}")
    # k-th nearest neighbour excluding the point itself: kthvalue(k + 1) counts the zero self-distance.
    rad_s = _pairwise_dist(s, s).kthvalue(neighborhood + 1, dim=1).values
    rad_r = _pairwise_dist(r, r).kthvalue(neighborhood + 1, dim=1).values
    d_rs = _pairwise_dist(r, s)
    in_synth = (d_rs <= rad_s[None, :]).any(dim=1).numpy()
    in_real = (d_rs.T <= rad_r[None, :]).any(dim=1).numpy()
    return in_real, in_synth


def share_replicates(indicator: np.ndarray, boot: Any, stream: int) -> np.ndarray:
    """Bootstrap replicates of the share of True in ``indicator`` (one entry per image of the set
    resampled on ``stream``)."""
    from genbench.stats import counts

    ind = np.asarray(indicator, dtype=np.float64)
    n = len(ind)
    return counts(boot.indices(n, stream), n) @ ind / n


# ---------------------------------------------------------------------------------------------
# From features to MetricResults.


def _guard(name: str, fn: Callable[[], MetricResult]) -> MetricResult:
    """A metric that cannot run becomes 'unavailable' (user-fixable) or 'failed' (a bug), never a crash."""
    t0 = time.perf_counter()
    try:
        res = fn()
    except GenbenchError as exc:
        res = MetricResult.unavailable(name, str(exc))
    except Exception as exc:  # noqa: BLE001 - reported in the result, with its type
        res = MetricResult.failed(name, f"{type(exc).__name__}: {exc}")
    res.elapsed_s += time.perf_counter() - t0
    return res


def metrics_from_features(synth: InceptionFeatures, real: InceptionFeatures, *, metrics: set[str] | frozenset[str],
                          seed: int | None = None, kid_subset_size: int | None = None, kid_subsets: int = KID_SUBSETS,
                          is_splits: int = IS_SPLITS, common: dict[str, Any] | None = None,
                          boot: Any = None) -> dict[str, MetricResult]:
    """IS/FID/KID/precision/recall from precomputed features. ``common`` is merged into every params.

    ``seed``: IS shuffle and KID subset seed (None: torch-fidelity's default, 2020). ``boot`` (a
    ``genbench.stats.Bootstrap``): adds confidence intervals.
    """
    common = dict(common or {})
    seed = TF_SEED if seed is None else int(seed)
    ns, nr = len(synth), len(real)
    out: dict[str, MetricResult] = {}
    use_boot = boot is not None and boot.enabled

    def make(name: str, value: float, std: float | None, params: dict[str, Any]) -> MetricResult:
        return MetricResult(name=name, value=value, std=std, params={**common, **params},
                            n_real=nr, n_synth=ns)

    if "is" in metrics:
        def _is() -> MetricResult:
            res = is_result(synth.logits, splits=is_splits, seed=seed, boot=boot)
            res.params = {**common, **res.params}
            res.n_real, res.n_synth = nr, ns
            return res
        out["is"] = _guard("is", _is)
    if "fid" in metrics:
        def _fid() -> MetricResult:
            res = make("fid", frechet_distance(real.pool3, synth.pool3), None,
                       {"feature": "2048", "sqrtm": "float64, nuclear norm of covariance factors"})
            if use_boot:
                from genbench.stats import attach_ci

                attach_ci(res, fid_replicates(real.pool3, synth.pool3, boot), boot, bounds=(0.0, None))
            return res
        out["fid"] = _guard("fid", _fid)
    if "kid" in metrics:
        def _kid() -> MetricResult:
            params: dict[str, Any] = {"feature": "2048", "subsets": kid_subsets, "kernel": "poly",
                                      "degree": KID_DEGREE, "gamma": "1/2048", "coef0": KID_COEF0,
                                      "estimator": "unbiased", "seed": seed}
            size = kid_subset_size
            if size is None:
                size = min(ns, nr, KID_SUBSET_SIZE)
                if size < KID_SUBSET_SIZE:
                    params["subset_size_adapted"] = f"{KID_SUBSET_SIZE} -> {size} (min(n_real, n_synth))"
            params["subset_size"] = size
            mean, std = kernel_inception_distance(synth.pool3, real.pool3, subsets=kid_subsets,
                                                  subset_size=size, seed=seed)
            res = make("kid", mean, std, params)
            if use_boot:
                from genbench.stats import attach_ci

                attach_ci(res, kid_replicates(synth.pool3, real.pool3, boot), boot, params={
                    "ci_statistic": "unbiased MMD^2 over all images of each bootstrap resample"})
            return res
        out["kid"] = _guard("kid", _kid)
    if "precision" in metrics or "recall" in metrics:
        t0 = time.perf_counter()
        params = {"feature": "2048", "neighborhood": PRC_NEIGHBORHOOD, "distance": "euclidean, float64"}
        try:
            in_real, in_synth = manifold_indicators(synth.pool3, real.pool3)
            pr: dict[str, MetricResult] = {"precision": make("precision", float(in_real.mean()), None, params),
                                           "recall": make("recall", float(in_synth.mean()), None, params)}
            if use_boot:
                from genbench.stats import REAL, SYNTH, attach_ci

                note = {"ci_conditional_on": "the other set's k-NN manifold (per-image indicators resampled)"}
                attach_ci(pr["precision"], share_replicates(in_real, boot, SYNTH), boot, bounds=(0.0, 1.0),
                          params=note)
                attach_ci(pr["recall"], share_replicates(in_synth, boot, REAL), boot, bounds=(0.0, 1.0),
                          params=note)
        except GenbenchError as exc:
            pr = {k: MetricResult.unavailable(k, str(exc), **{**common, **params}) for k in ("precision", "recall")}
        except Exception as exc:  # noqa: BLE001
            pr = {k: MetricResult.failed(k, f"{type(exc).__name__}: {exc}") for k in ("precision", "recall")}
        dt = time.perf_counter() - t0
        for k in ("precision", "recall"):
            if k in metrics:
                pr[k].elapsed_s = dt
                out[k] = pr[k]
    return out


def is_result(logits: np.ndarray, *, splits: int = IS_SPLITS, seed: int | None = None,
              boot: Any = None) -> MetricResult:
    """The IS MetricResult of one synthetic set's logits (splits adapted to small sets, recorded)."""
    seed = TF_SEED if seed is None else int(seed)
    n = len(logits)
    params: dict[str, Any] = {"feature": "logits_unbiased", "splits": splits, "shuffle_seed": seed,
                              "set": "synth"}
    used = splits
    if n < splits:
        # Fewer images than splits would leave empty splits (torch-fidelity returns NaN).
        used = max(1, n // 2)
        params.update(splits=used, splits_adapted=f"{splits} -> {used} (n_synth={n})")
    mean, std = inception_score(logits, splits=used, seed=seed)
    res = MetricResult(name="is", value=mean, std=std, params=params, n_synth=n)
    if boot is not None and boot.enabled:
        from genbench.stats import attach_ci

        attach_ci(res, is_replicates(logits, boot, splits=used, seed=seed), boot, bounds=(1.0, None),
                  params={"ci_resamples": "synthetic images only (IS does not use the real set)"})
    return res


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def compute_inception_metrics(real: torch.Tensor, synth: torch.Tensor, *, metrics: set[str] | frozenset[str],
                              weights: str | os.PathLike[str] | None = None, device: str = "cpu",
                              batch_size: int = 32, seed: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                              use_cache: bool = True, kid_subset_size: int | None = None,
                              backend: str = "genbench") -> dict[str, MetricResult]:
    """IS/FID/KID/precision/recall between two canonical (N,1,H,W) sets.

    Missing weights give 'unavailable' results whose reason says how to provide them.
    """
    from genbench.metrics.registry import REGISTRY

    wanted = set(metrics) & set(REGISTRY.of_family("inception"))
    if not wanted:
        return {}
    try:
        wpath = resolve_inception_weights(weights)
    except GenbenchError as exc:
        return {m: MetricResult.unavailable(m, str(exc)) for m in sorted(wanted)}
    if backend == "torch-fidelity":
        return _via_torch_fidelity(real, synth, wanted, wpath, _resolve_device(device), batch_size, seed,
                                   kid_subset_size)
    if backend != "genbench":
        raise ValueError(f"unknown Inception backend {backend!r}: use 'genbench' or 'torch-fidelity'")
    ext = InceptionFeatureExtractor(wpath, device=_resolve_device(device), batch_size=batch_size)
    t0 = time.perf_counter()
    fr, _ = ext.features(real, cache_dir=cache_dir, use_cache=use_cache)
    fs, _ = ext.features(synth, cache_dir=cache_dir, use_cache=use_cache)
    t_feat = time.perf_counter() - t0
    common = {"backbone": BACKBONE, "weights_sha256": ext.weights_sha256, "backend": "genbench",
              "preprocessing": ext.preprocessing()}
    res = metrics_from_features(fs, fr, metrics=wanted, seed=seed, kid_subset_size=kid_subset_size, common=common)
    for r in res.values():
        r.elapsed_s += t_feat / max(1, len(res))
    return res


class _UInt8RGB(torch.utils.data.Dataset):
    """In-memory dataset torch-fidelity accepts: uint8 3xHxW per item (grayscale replicated)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.u8 = to_uint8_gray(images)

    def __len__(self) -> int:
        return len(self.u8)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.u8[i]
        return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x


def _via_torch_fidelity(real: torch.Tensor, synth: torch.Tensor, wanted: set[str], wpath: Path,
                        device: torch.device, batch_size: int, seed: int | None,
                        kid_subset_size: int | None) -> dict[str, MetricResult]:
    import torch_fidelity

    seed = TF_SEED if seed is None else int(seed)
    # torch-fidelity unpickles the file with weights_only=False: refuse anything that does not load
    # as a plain tensor state dict first.
    load_inception_state_dict(wpath)
    ns, nr = len(synth), len(real)
    kwargs: dict[str, Any] = dict(
        input1=_UInt8RGB(synth), input2=_UInt8RGB(real), cuda=device.type == "cuda", batch_size=batch_size,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(wpath),
        feature_layer_prc="2048", rng_seed=seed, cache=False, verbose=False, save_cpu_ram=True,
        isc="is" in wanted, fid="fid" in wanted, kid="kid" in wanted,
        prc=bool({"precision", "recall"} & wanted),
    )
    common = {"backbone": BACKBONE, "weights_sha256": file_sha256(wpath), "backend": "torch-fidelity",
              "torch_fidelity_version": torch_fidelity.__version__}
    size = kid_subset_size if kid_subset_size is not None else min(ns, nr, KID_SUBSET_SIZE)
    splits = IS_SPLITS if ns >= IS_SPLITS else max(1, ns // 2)
    kwargs.update(kid_subset_size=size, isc_splits=splits)
    t0 = time.perf_counter()
    try:
        raw = torch_fidelity.calculate_metrics(**kwargs)
    except Exception as exc:  # noqa: BLE001
        return {m: MetricResult.failed(m, f"torch-fidelity: {type(exc).__name__}: {exc}") for m in wanted}
    dt = time.perf_counter() - t0
    table = {
        "is": ("inception_score_mean", "inception_score_std", {"feature": "logits_unbiased", "splits": splits}),
        "fid": ("frechet_inception_distance", None, {"feature": "2048"}),
        "kid": ("kernel_inception_distance_mean", "kernel_inception_distance_std",
                {"feature": "2048", "subset_size": size, "subsets": KID_SUBSETS}),
        "precision": ("precision", None, {"feature": "2048", "neighborhood": PRC_NEIGHBORHOOD}),
        "recall": ("recall", None, {"feature": "2048", "neighborhood": PRC_NEIGHBORHOOD}),
    }
    out = {}
    for m in sorted(wanted):
        key, key_std, params = table[m]
        out[m] = MetricResult(name=m, value=float(raw[key]), std=None if key_std is None else float(raw[key_std]),
                              params={**common, **params, "seed": seed}, elapsed_s=dt / len(wanted),
                              n_real=nr, n_synth=ns)
    return out


# ---------------------------------------------------------------------------------------------
# Registry entry points: IS/FID/KID/precision/recall are computed together, once per context.


def _inception_results(ctx: Any) -> dict[str, MetricResult]:
    from genbench.metrics.registry import REGISTRY

    def build() -> dict[str, MetricResult]:
        wanted = set(ctx.wanted) & set(REGISTRY.of_family("inception"))
        opts = ctx.options
        if opts.inception_backend == "torch-fidelity" and not ctx.dist.is_main:
            return {m: MetricResult.unavailable(m, "computed on rank 0") for m in wanted}
        if opts.inception_backend == "torch-fidelity":
            wpath = resolve_inception_weights(opts.inception_weights)
            return _via_torch_fidelity(ctx.real.images, ctx.synth.images, wanted, wpath,
                                       _resolve_device(ctx.device), opts.batch_size, opts.seed,
                                       opts.kid_subset_size)

        def extractor() -> InceptionFeatureExtractor:
            key = ("inception-extractor", str(opts.inception_weights), ctx.device)
            if key not in ctx.shared:
                ctx.shared[key] = InceptionFeatureExtractor(opts.inception_weights, device=ctx.device,
                                                            batch_size=opts.batch_size)
            return ctx.shared[key]

        ext = extractor()

        def features(label: str) -> Any:
            def compute(images: Any) -> InceptionFeatures:
                with ctx.step(f"Inception features ({label})", len(images)) as step:
                    feats, _hit = ext.features(images.images, cache_dir=opts.cache_dir,
                                               content_sha256=ctx.sha256(images), progress=step,
                                               use_cache=opts.use_cache, dist=ctx.dist)
                return feats

            return ctx.per_image(("inception", ext.weights_sha256), label, compute)

        fr, fs = features("real"), features("synth")
        if ctx.dist.enabled and not ctx.dist.is_main and not _splits_replicates(ctx):
            return {m: MetricResult.unavailable(m, "computed on rank 0") for m in wanted}
        common = {"backbone": BACKBONE, "weights_sha256": ext.weights_sha256, "backend": "genbench",
                  "preprocessing": ext.preprocessing()}
        with ctx.step("IS/FID/KID/PR", 1):
            # IS/KID: torch-fidelity's default seed unless the user gave one (options.seed None).
            return metrics_from_features(fs, fr, metrics=wanted, seed=opts.seed,
                                         kid_subset_size=opts.kid_subset_size, common=common, boot=ctx.boot)

    return ctx.once("inception", build)


def _splits_replicates(ctx: Any) -> bool:
    """Whether this rank computes a share of the bootstrap replicates (then it runs the statistics
    too; otherwise rank 0 alone does)."""
    from genbench.distributed import BootstrapShard

    return isinstance(getattr(ctx, "boot", None), BootstrapShard)


def compute_is(ctx: Any) -> MetricResult:
    return _inception_results(ctx)["is"]


def compute_fid(ctx: Any) -> MetricResult:
    return _inception_results(ctx)["fid"]


def compute_kid(ctx: Any) -> MetricResult:
    return _inception_results(ctx)["kid"]


def compute_precision(ctx: Any) -> MetricResult:
    return _inception_results(ctx)["precision"]


def compute_recall(ctx: Any) -> MetricResult:
    return _inception_results(ctx)["recall"]
