"""Issue 14: what confidence intervals add, per metric, at N vs N images (default 1,000 vs 1,000).

For each metric the script times, in the same run, the metric itself (for the Inception metrics:
feature extraction of both sets, uncached, plus the formula, shared out as the pipeline does) and
its bootstrap (``--bootstrap`` replicates, default genbench's), and prints the ratio
CI time / metric time. The issue's target: CIs add at most the metric's own run time (ratio <= 1).

Inception weights are random (Kaiming) unless ``--inception-weights`` is given: the cost is the
same, the values are not meaningful. Images are smooth random fields at ``--size`` px (default
64; the Inception cost does not depend on it, DS and FDS get cheaper at small sizes, which makes
the ratio *harder* to meet).

    python benchmarks/bench_ci.py                 # 1,000 vs 1,000, all metrics
    python benchmarks/bench_ci.py --n 300 --metrics fid,ds
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter


def make_set(n: int, size: int, seed: int, offset: float) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    k = 24
    basis = gaussian_filter(np.random.default_rng(99).standard_normal((k, size, size)), (0, 4, 4)) * 15
    basis = basis.reshape(k, -1).astype(np.float32)
    z = (rng.standard_normal((n, k)) / 3 + offset).astype(np.float32)
    x = np.tanh(z @ basis) + 0.05 * rng.standard_normal((n, size * size), dtype=np.float32)
    return torch.from_numpy(np.clip(x, -1, 1).reshape(n, 1, size, size).astype(np.float32))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    from genbench import stats
    from genbench.metrics import ds as dsm
    from genbench.metrics import fds as fdsm
    from genbench.metrics import fidelity as fd
    from genbench.metrics.inception import InceptionFeatureExtractor, random_inception_state_dict
    from genbench.metrics.ssim import nearest_ssim

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--bootstrap", type=int, default=stats.DEFAULT_BOOTSTRAP)
    ap.add_argument("--metrics", default="is,fid,kid,pr,fds,ds")
    ap.add_argument("--inception-weights", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=50)
    args = ap.parse_args()
    wanted = set(args.metrics.split(","))
    boot = stats.Bootstrap(replicates=args.bootstrap, seed=0)
    real, synth = make_set(args.n, args.size, 1, 0.0), make_set(args.n, args.size, 2, 0.15)
    print(f"# bench_ci {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; N = {args.n} vs {args.n}, {args.size} px, "
          f"B = {args.bootstrap}")
    rows: list[tuple[str, float, float, str]] = []

    if wanted & {"is", "fid", "kid", "pr"}:
        with tempfile.TemporaryDirectory() as tmp:
            weights = args.inception_weights
            if weights is None:
                weights = Path(tmp) / "random-inception.pth"
                torch.save(random_inception_state_dict(seed=0), weights)
            ext = InceptionFeatureExtractor(weights, device="cpu", batch_size=args.batch_size)
            (fr_fs, t_feat) = timed(lambda: (ext.features(real, use_cache=False)[0],
                                             ext.features(synth, use_cache=False)[0]))
        fr, fs = fr_fs
        n_inc = len(wanted & {"is", "fid", "kid", "pr"})
        share = t_feat / n_inc  # the pipeline shares feature time out over the Inception metrics
        print(f"Inception features, both sets: {t_feat:.1f} s ({2 * args.n / t_feat:.1f} img/s); "
              f"each Inception metric is charged {share:.1f} s")
        if "is" in wanted:
            _, t = timed(lambda: fd.inception_score(fs.logits))
            _, tc = timed(lambda: fd.is_replicates(fs.logits, boot))
            rows.append(("IS", share + t, tc, f"formula {t:.2f} s"))
        if "fid" in wanted:
            _, t = timed(lambda: fd.frechet_distance(fr.pool3, fs.pool3))
            _, tc = timed(lambda: fd.fid_replicates(fr.pool3, fs.pool3, boot))
            rows.append(("FID", share + t, tc, f"formula {t:.2f} s"))
        if "kid" in wanted:
            size = min(args.n, fd.KID_SUBSET_SIZE)
            _, t = timed(lambda: fd.kernel_inception_distance(fs.pool3, fr.pool3, subset_size=size))
            _, tc = timed(lambda: fd.kid_replicates(fs.pool3, fr.pool3, boot))
            rows.append(("KID", share + t, tc, f"formula {t:.2f} s"))
        if "pr" in wanted:
            (ind, t) = timed(lambda: fd.manifold_indicators(fs.pool3, fr.pool3))
            _, tc = timed(lambda: (fd.share_replicates(ind[0], boot, stats.SYNTH),
                                   fd.share_replicates(ind[1], boot, stats.REAL)))
            rows.append(("precision+recall", share + t, tc, f"formula {t:.2f} s"))
    if "ds" in wanted:
        ((nr, ns), t) = timed(lambda: (nearest_ssim(real), nearest_ssim(synth)))
        _, tc = timed(lambda: dsm.ds_replicates(nr, ns, boot))
        rows.append(("DS", t, tc, "nearest SSIM of both sets"))
    if "fds" in wanted:
        (res, t) = timed(lambda: fdsm.compute_fds(real, synth))
        _, tc = timed(lambda: fdsm.fds_replicates(res.extra["embeddings"], args.n, boot))
        rows.append(("FDS", t, tc, "PCA + 3 t-SNE seeds"))

    print()
    print("| metric | metric time (s) | CI time (s) | CI / metric | note |")
    print("|---|---|---|---|---|")
    for name, t, tc, note in rows:
        print(f"| {name} | {t:.1f} | {tc:.2f} | {tc / t:.2f} | {note} |")
    worst = max(tc / t for _, t, tc, _ in rows)
    print(f"\nworst ratio {worst:.2f} (target <= 1: {'met' if worst <= 1 else 'NOT met'}); "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
