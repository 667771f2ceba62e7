"""Issue 3, target 1: the nearest-SSIM engine against the scikit-image one-call-per-pair loop.

Both run in this process on the same images (smooth random fields with noise, canonical
[-1, 1], 256x256 by default). Prints pairs/s for each, their ratio (wall clock, and CPU time so
that other processes on a shared machine matter less), the fraction of the arithmetic limit,
and the largest per-image difference between the engine's nearest SSIMs and the loop's.

    python benchmarks/bench_ds.py                      # loop on N=100 (4,950 pairs), engine on N=400
    python benchmarks/bench_ds.py --loop-n 40 --engine-n 200 --size 128
    python benchmarks/bench_ds.py --memory-n 5500 --memory-tiles 4   # peak RSS at paper scale
    python benchmarks/bench_ds.py --scaling             # engine on 1 thread, then on all
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
from skimage.metrics import structural_similarity

from genbench.metrics.ssim import nearest_ssim

LIMIT_PAIRS_S = 50_000  # issue 3's arithmetic limit for 256x256 on this 2-core CPU

SK = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 2}


def make_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        x = gaussian_filter(rng.standard_normal((size, size)), 3.0) * 12
        out[i] = np.clip(x + 0.05 * rng.standard_normal((size, size)), -1, 1)
    return out


def skimage_loop(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    n = len(x)
    best = np.full(n, -np.inf)
    t0, c0 = time.perf_counter(), time.process_time()
    for a in range(n):
        for b in range(a + 1, n):
            s = structural_similarity(x[a], x[b], **SK)
            best[a] = max(best[a], s)
            best[b] = max(best[b], s)
    return best, time.perf_counter() - t0, time.process_time() - c0


def timed_engine(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = nearest_ssim(x)
    return out, time.perf_counter() - t0, time.process_time() - c0


def thread_scaling(x: np.ndarray) -> None:
    """Whether the engine uses every core: pairs/s and CPU/wall on one thread, then on all."""
    import numba

    pairs = len(x) * (len(x) - 1) // 2
    full = numba.config.NUMBA_NUM_THREADS
    for threads in sorted({1, full}):
        numba.set_num_threads(threads)
        _, wall, cpu = timed_engine(x)
        print(f"engine on {threads} thread(s): {pairs / wall:9.1f} pairs/s wall, CPU/wall {cpu / wall:.2f}")
    numba.set_num_threads(full)


class _Stop(Exception):
    pass


def memory_check(n: int, size: int, tiles: int) -> None:
    """Peak RSS of the engine on N images, stopped after ``tiles`` tiles (the stats cache and
    the buffers are full by then; nothing grows with the number of tiles)."""
    x = make_images_fast(n, size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    seen = {"tiles": 0}

    def prog(done: int, total: int) -> None:
        seen["tiles"] += 1
        if seen["tiles"] >= tiles:
            raise _Stop

    t0 = time.perf_counter()
    try:
        nearest_ssim(x, progress=prog)
    except _Stop:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"memory: N={n} at {size}x{size}: images {x.nbytes / 2**30:.2f} GiB, process peak RSS "
          f"{peak:.2f} GiB (before engine {base:.2f} GiB), {seen['tiles']} tiles in "
          f"{time.perf_counter() - t0:.1f} s")


def make_images_fast(n: int, size: int) -> np.ndarray:
    """Low-rank smooth images, cheap to make at N = 5,500."""
    rng = np.random.default_rng(1)
    basis = gaussian_filter(rng.standard_normal((16, size, size)), (0, 3, 3)).reshape(16, -1) * 12
    out = np.empty((n, size * size), np.float32)
    for i0 in range(0, n, 512):
        z = rng.standard_normal((min(512, n - i0), 16)).astype(np.float32) / 4
        out[i0 : i0 + len(z)] = np.clip(z @ basis.astype(np.float32), -1, 1)
    return out.reshape(n, size, size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--loop-n", type=int, default=100, help="images for the scikit-image loop")
    ap.add_argument("--engine-n", type=int, default=400, help="images for the engine's throughput")
    ap.add_argument("--loop-dtype", choices=("float32", "float64"), default="float32",
                    help="dtype handed to scikit-image (float32 is the canonical form; it then "
                         "computes in float32, ~1.5x faster than float64)")
    ap.add_argument("--memory-n", type=int, default=0, help="also measure peak memory at this N")
    ap.add_argument("--memory-tiles", type=int, default=4)
    ap.add_argument("--scaling", action="store_true",
                    help="also time the engine (N=--engine-n) on one numba thread and on all")
    args = ap.parse_args()

    print(f"# bench_ds  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.processor() or platform.machine()}"
          f"  python {sys.version.split()[0]}")
    x = make_images(max(args.loop_n, args.engine_n), args.size)
    xl = x[: args.loop_n]
    nearest_ssim(xl[:3])  # JIT / cache load outside the timings
    pairs_l = args.loop_n * (args.loop_n - 1) // 2
    ref, wall_l, cpu_l = skimage_loop(xl.astype(args.loop_dtype))
    eng_l, wall_e1, _ = timed_engine(xl)
    diff = float(np.abs(eng_l - ref).max())
    xe = x[: args.engine_n]
    pairs_e = args.engine_n * (args.engine_n - 1) // 2
    _, wall_e, cpu_e = timed_engine(xe)
    loop_ps, loop_cps = pairs_l / wall_l, pairs_l / cpu_l
    eng_ps, eng_cps = pairs_e / wall_e, pairs_e / cpu_e
    print(f"images {args.size}x{args.size}, scikit-image fed {args.loop_dtype}")
    print(f"scikit-image loop   N={args.loop_n:5d} {pairs_l:9d} pairs  {wall_l:8.2f} s  "
          f"{loop_ps:9.1f} pairs/s wall  {loop_cps:9.1f} pairs/CPU-s")
    print(f"engine (same N)     N={args.loop_n:5d} {pairs_l:9d} pairs  {wall_e1:8.2f} s  "
          f"{pairs_l / wall_e1:9.1f} pairs/s wall")
    print(f"engine              N={args.engine_n:5d} {pairs_e:9d} pairs  {wall_e:8.2f} s  "
          f"{eng_ps:9.1f} pairs/s wall  {eng_cps:9.1f} pairs/CPU-s")
    print(f"ratio engine/loop: {eng_ps / loop_ps:.1f}x wall, {eng_cps / loop_cps:.1f}x per CPU-second")
    if args.size == 256:
        print(f"fraction of the ~{LIMIT_PAIRS_S:,} pairs/s limit: {eng_ps / LIMIT_PAIRS_S:.1%} wall")
    print(f"max |engine - loop| over the N={args.loop_n} nearest SSIMs: {diff:.2e}")
    if args.scaling:
        thread_scaling(xe)
    if args.memory_n:
        memory_check(args.memory_n, args.size, args.memory_tiles)


if __name__ == "__main__":
    main()
