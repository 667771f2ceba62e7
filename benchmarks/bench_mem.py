"""Issue 15: the memorisation audit's cross-set nearest-SSIM engine.

In one run, on the same images (smooth random fields with noise, canonical [-1, 1], 256x256 by
default), this measures:

1. the cross-set engine (``nearest_ssim_cross``: each query's nearest reference image) against
   the DS engine (``nearest_ssim``: each image's nearest within its set) in pairs/s: the target
   is the same throughput (within 10 %), since both run the same kernels;
2. both against the scikit-image loop (one ``structural_similarity`` call per pair) in pairs/s,
   and the largest difference of the nearest SSIMs (values and partner indices) from that loop;
3. the pixel Pearson search (``nearest_pearson``) in pairs/s;
4. optionally (``--memory-q/--memory-r``) the peak RSS of the cross engine at paper scale,
   stopped after a few tiles (nothing grows with the number of tiles), and the projected time of
   the full audit at that scale from the measured throughput (``--full`` runs it instead).

    python benchmarks/bench_mem.py                          # loop 30 x 30, engines 240 x 240
    python benchmarks/bench_mem.py --loop-n 20 --engine-n 160 --size 128
    python benchmarks/bench_mem.py --memory-q 5500 --memory-r 4400 --memory-only
    python benchmarks/bench_mem.py --device cuda            # the torch engine on a GPU
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ds import make_images, make_images_fast  # noqa: E402

from genbench.metrics.mem import nearest_pearson  # noqa: E402
from genbench.metrics.ssim import nearest_ssim, nearest_ssim_cross  # noqa: E402

SK = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 2}


def skimage_cross(q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    best = np.full(len(q), -np.inf)
    arg = np.zeros(len(q), dtype=np.int64)
    t0, c0 = time.perf_counter(), time.process_time()
    for a in range(len(q)):
        for b in range(len(r)):
            s = structural_similarity(q[a], r[b], **SK)
            if s > best[a]:
                best[a], arg[a] = s, b
    return best, arg, time.perf_counter() - t0, time.process_time() - c0


def timed(fn, *args, **kw) -> tuple[object, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0, time.process_time() - c0


class _Stop(Exception):
    pass


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def memory_check(nq: int, nr: int, size: int, tiles: int, device: str) -> None:
    """RSS sampled every 20 ms while the engine runs, against the RSS just before it (the images
    are built first; their temporaries do not count)."""
    import threading

    q = make_images_fast(nq, size)
    r = make_images_fast(nr, size)  # the same generator: r repeats q's first images (no matter)
    base = _rss_gib()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_gib())
            time.sleep(0.02)

    seen = {"tiles": 0}

    def prog(done: int, total: int) -> None:
        seen["tiles"] += 1
        if seen["tiles"] >= tiles:
            raise _Stop

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        nearest_ssim_cross(q, r, progress=prog, device=device)
    except _Stop:
        pass
    stop.set()
    sampler.join()
    print(f"memory: {nq} x {nr} at {size}x{size}: images {(q.nbytes + r.nbytes) / 2**30:.2f} GiB, "
          f"RSS {base:.2f} GiB before the engine, peak {peak[0]:.2f} GiB while it ran "
          f"(+{peak[0] - base:.2f} GiB: statistics cache, capped at 1 GiB, and one tile; no "
          f"N_q x N_r array) over {seen['tiles']} tiles in {time.perf_counter() - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--loop-n", type=int, default=30, help="queries and references of the scikit-image loop")
    ap.add_argument("--engine-n", type=int, default=240,
                    help="images of the DS engine; the cross engine gets N/2 x N images, the same "
                         "pair count as N(N-1)/2 within the set, to the pair")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2, help="engine timings repeated, alternating; best kept")
    ap.add_argument("--memory-q", type=int, default=0)
    ap.add_argument("--memory-r", type=int, default=0)
    ap.add_argument("--memory-tiles", type=int, default=3)
    ap.add_argument("--memory-only", action="store_true", help="only the memory measurement")
    ap.add_argument("--paper-q", type=int, default=5500, help="synthetic images for the projection")
    ap.add_argument("--paper-r", type=int, default=4400, help="training images for the projection")
    ap.add_argument("--paper-real", type=int, default=1100, help="held-out images for the projection")
    args = ap.parse_args()

    print(f"# bench_mem  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.processor() or platform.machine()}"
          f"  python {sys.version.split()[0]}  device {args.device}  load average "
          f"{' '.join(f'{v:.1f}' for v in __import__('os').getloadavg())}")
    if args.memory_q and args.memory_r:
        # First, so that the process's peak RSS is this measurement's alone.
        nearest_ssim_cross(make_images(2, 16), make_images(2, 16), device=args.device)
        memory_check(args.memory_q, args.memory_r, args.size, args.memory_tiles, args.device)
        if args.memory_only:
            return
    n = args.engine_n
    x = make_images(n + args.loop_n, args.size)
    nearest_ssim(x[:3], device=args.device)
    nearest_ssim_cross(x[:2], x[2:4], device=args.device)  # JIT / cache load outside the timings

    # 1. Same pair count: within-set N(N-1)/2 vs cross (N/2) x (N-1) (the sets overlap; the
    #    arithmetic per pair does not depend on the pixels).
    if n % 2:
        raise SystemExit("--engine-n must be even")
    pairs_ds = n * (n - 1) // 2
    q, r = x[: n // 2], x[1:n]
    pairs_cross = len(q) * len(r)
    best_ds = best_cross = (np.inf, np.inf)
    for _ in range(args.repeats):
        _, w, c = timed(nearest_ssim, x[:n], device=args.device)
        best_ds = min(best_ds, (w, c))
        _, w, c = timed(nearest_ssim_cross, q, r, device=args.device)
        best_cross = min(best_cross, (w, c))
    ds_ps, cross_ps = pairs_ds / best_ds[0], pairs_cross / best_cross[0]
    print(f"images {args.size}x{args.size}")
    print(f"DS engine (within)  N={n:5d}           {pairs_ds:9d} pairs  {best_ds[0]:7.2f} s  "
          f"{ds_ps:9.1f} pairs/s wall  {pairs_ds / best_ds[1]:9.1f} pairs/CPU-s")
    print(f"cross engine        {len(q):5d} x {len(r):5d}   {pairs_cross:9d} pairs  {best_cross[0]:7.2f} s  "
          f"{cross_ps:9.1f} pairs/s wall  {pairs_cross / best_cross[1]:9.1f} pairs/CPU-s")
    print(f"ratio cross / DS engine: {cross_ps / ds_ps:.3f} wall, "
          f"{(pairs_cross / best_cross[1]) / (pairs_ds / best_ds[1]):.3f} per CPU-second (target 0.9-1.1)")

    # 2. Against scikit-image, on a small cross set.
    m = args.loop_n
    lq, lr = x[n : n + m // 2 + m % 2], x[n + m // 2 + m % 2 : n + m]
    lr = np.concatenate([lr, lq[:1]])  # one exact copy among the references
    ref_v, ref_i, wall_l, cpu_l = skimage_cross(lq, lr)
    (eng_v, eng_i), wall_e, _ = timed(nearest_ssim_cross, lq, lr, device=args.device)
    pairs_l = len(lq) * len(lr)
    loop_ps = pairs_l / wall_l
    print(f"scikit-image loop   {len(lq):5d} x {len(lr):5d}   {pairs_l:9d} pairs  {wall_l:7.2f} s  "
          f"{loop_ps:9.1f} pairs/s wall  {pairs_l / cpu_l:9.1f} pairs/CPU-s")
    print(f"ratio cross engine / loop: {cross_ps / loop_ps:.1f}x wall; "
          f"max |engine - loop| nearest SSIM {np.abs(eng_v - ref_v).max():.2e}, partners equal: "
          f"{bool((eng_i == ref_i).all())}")

    # 3. Pearson.
    _, w, _ = timed(nearest_pearson, q, r, device=args.device)
    print(f"nearest Pearson     {len(q):5d} x {len(r):5d}   {pairs_cross:9d} pairs  {w:7.2f} s  "
          f"{pairs_cross / w:9.1f} pairs/s wall")

    # 4. Paper scale.
    if args.size == 256:
        pq, pr, pre = args.paper_q, args.paper_r, args.paper_real
        total = (pq + pre) * pr
        ssim_s = total / cross_ps
        pear_s = total / (pairs_cross / w)
        print(f"projection: {pq:,} synthetic + {pre:,} held-out x {pr:,} training images = {total:,} pairs: "
              f"SSIM {ssim_s / 60:.1f} min + Pearson {pear_s / 60:.1f} min at the rates above "
              f"(the held-out side is searched once per dataset and reused by every model)")


if __name__ == "__main__":
    main()
