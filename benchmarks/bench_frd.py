"""Radiomic feature throughput (FRD) and what FRD adds to `make run`.

Reference (same run, same images): the frd-score package's own folder path, i.e. what
``python -m frd_score A B`` does per image (``process_image_mask_pair`` on PNG files in a folder,
its ``multiprocessing.Pool``). genbench runs the same per-image function on in-memory 8-bit
PNGs in its own process pool and caches the result per image; the ratio shows that nothing is
lost on the way. The features of both must be identical.

Then the `make run` estimate: FRD extracts each image once (per-image cache); `genbench run
--models all --dataset pelvic` (quick preset, 32 px) scores five models' samples, the held-out
set and a size-matched real floor sample, i.e. about 7 x N images of N = the held-out size.

    .venv/bin/python benchmarks/bench_frd.py                 # 24 images at 64 and 256 px, 2 workers
    .venv/bin/python benchmarks/bench_frd.py --n 12 --sizes 64 --workers 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24, help="images per size")
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--version", default="v1", choices=["v1", "v0"])
    args = ap.parse_args()

    from frd_score import frd as pkg

    from genbench.data.prepare import prepare_dataset
    from genbench.io import write_png_folder
    from genbench.metrics import frd

    frd._quiet_radiomics()
    print(f"workers: {args.workers}, version {args.version}, load average {os.getloadavg()[0]:.1f}")
    per_image = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        ds = prepare_dataset("pelvic", size=size, n=max(args.n * 2, 40), seed=0, use_cache=False)
        x = ds.train.images[: args.n]
        with tempfile.TemporaryDirectory() as tmp:
            files = write_png_folder(x, Path(tmp) / "a")
            ext = pkg.get_feature_extractor(frd_version=args.version, image_dim=2)
            t0 = time.perf_counter()
            ref, _, _ = pkg.compute_features(files, ext, num_workers=args.workers, frd_version=args.version)
            t_ref = time.perf_counter() - t0
        frd.POOL_MIN_IMAGES = 2 if args.workers > 1 else 10**9
        t0 = time.perf_counter()
        ours = frd.radiomic_features(x, version=args.version, use_cache=False, n_jobs=args.workers)
        t_ours = time.perf_counter() - t0
        same = np.array_equal(ours.values, np.asarray(ref, dtype=np.float64), equal_nan=True)
        per_image[size] = t_ours / args.n
        print(f"{size:4d} px: frd-score folder path {args.n / t_ref:6.2f} img/s | genbench "
              f"{args.n / t_ours:6.2f} img/s | ratio {t_ref / t_ours:4.2f}x | identical features: {same}")
        # The cache: a second pass reads every image's features back.
        with tempfile.TemporaryDirectory() as cache:
            frd.radiomic_features(x, version=args.version, cache_dir=cache, n_jobs=args.workers)
            t0 = time.perf_counter()
            frd.radiomic_features(x, version=args.version, cache_dir=cache, n_jobs=args.workers)
            print(f"        cached second pass: {args.n / (time.perf_counter() - t0):,.0f} img/s")

    quick = prepare_dataset("pelvic", size=32, seed=0, use_cache=False)
    n = len(quick.test)
    x = quick.train.images[: min(24, len(quick.train))]
    frd.POOL_MIN_IMAGES = 2 if args.workers > 1 else 10**9
    t0 = time.perf_counter()
    frd.radiomic_features(x, version=args.version, use_cache=False, n_jobs=args.workers)
    t32 = (time.perf_counter() - t0) / len(x)
    images = 7 * n
    print(f"make run (pelvic quick, 32 px): held-out N = {n}; ~7N = {images} images x {t32:.3f} s "
          f"= {images * t32 / 60:.1f} min of FRD extraction with {args.workers} worker(s)")


if __name__ == "__main__":
    main()
