"""Issue 3, target 3: one FDS embedding (PCA included) against a scikit-learn PCA + TSNE pipeline.

Same input for both (N real + N synthetic images, flattened pixels), measured in this process:
ours = ``genbench.metrics.fds`` (randomised float32 PCA on the two sets without stacking them,
then openTSNE), reference = ``sklearn.decomposition.PCA(50)`` on the stacked pixels, then
``sklearn.manifold.TSNE(perplexity=30, init="pca")``. Prints times, the ratio, both FDS values,
and our extra peak memory relative to the decoded pixels.

    python benchmarks/bench_fds.py                 # paper scale: 5,500 + 5,500 at 256x256
    python benchmarks/bench_fds.py --n 1000        # 1,000 + 1,000
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from datetime import UTC, datetime

import numpy as np
from scipy.ndimage import gaussian_filter

from genbench.metrics.fds import _default_jobs, fds_from_embedding, randomized_pca, tsne_embed


def make_sets(n: int, size: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of smooth low-rank images with noise; the second one's latent mean is shifted."""
    rng = np.random.default_rng(0)
    k = 24
    basis = (gaussian_filter(rng.standard_normal((k, size, size)), (0, 4, 4)) * 15).reshape(k, -1)
    basis = basis.astype(np.float32)

    def one(offset: float) -> np.ndarray:
        out = np.empty((n, size * size), np.float32)
        for i0 in range(0, n, 500):
            m = min(500, n - i0)
            z = (rng.standard_normal((m, k)) / 3 + offset).astype(np.float32)
            out[i0 : i0 + m] = np.tanh(z @ basis) + 0.05 * rng.standard_normal((m, size * size), dtype=np.float32)
        return out

    return one(0.0), one(shift)


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5500, help="images per set")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shift", type=float, default=0.05)
    ap.add_argument("--n-jobs", type=int, default=None)
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()
    jobs = args.n_jobs or _default_jobs(2 * args.n)
    print(f"# bench_fds  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.machine()}"
          f"  python {sys.version.split()[0]}  n_jobs={jobs}")
    real, synth = make_sets(args.n, args.size, args.shift)
    decoded = (real.nbytes + synth.nbytes) / 2**30
    before = rss_gib()

    t0 = time.perf_counter()
    feats = randomized_pca([real, synth], 50, seed=0)
    t_pca = time.perf_counter() - t0
    emb = tsne_embed(feats, perplexity=30.0, seed=0, n_jobs=jobs)
    t_ours = time.perf_counter() - t0
    fds_ours = fds_from_embedding(emb, args.n)
    peak = rss_gib()
    print(f"input: {args.n} + {args.n} images at {args.size}x{args.size}, decoded pixels {decoded:.2f} GiB")
    print(f"ours:    PCA {t_pca:7.2f} s  + openTSNE {t_ours - t_pca:7.2f} s  = {t_ours:7.2f} s   FDS {fds_ours:.4f}")
    print(f"ours: extra peak memory {max(0.0, peak - before):.2f} GiB over the decoded pixels "
          f"-> peak = {(decoded + max(0.0, peak - before)) / decoded:.2f}x decoded pixels")
    if args.skip_sklearn:
        return
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    t0 = time.perf_counter()
    stacked = np.vstack([real, synth])
    feats_sk = PCA(n_components=50, random_state=0).fit_transform(stacked)
    del stacked
    t_pca_sk = time.perf_counter() - t0
    emb_sk = TSNE(n_components=2, perplexity=30.0, init="pca", random_state=0, n_jobs=jobs).fit_transform(feats_sk)
    t_sk = time.perf_counter() - t0
    fds_sk = fds_from_embedding(emb_sk, args.n)
    print(f"sklearn: PCA {t_pca_sk:7.2f} s  + TSNE     {t_sk - t_pca_sk:7.2f} s  = {t_sk:7.2f} s   FDS {fds_sk:.4f}")
    print(f"ratio sklearn/ours: {t_sk / t_ours:.2f}x  (PCA {t_pca_sk / t_pca:.2f}x, t-SNE "
          f"{(t_sk - t_pca_sk) / (t_ours - t_pca):.2f}x)")


if __name__ == "__main__":
    main()
