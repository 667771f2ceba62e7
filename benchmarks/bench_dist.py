"""Issue 20: DS under torchrun, one process against K processes on the same images.

Each configuration is a fresh ``torchrun --nproc_per_node P`` job running the DS metric through
``genbench.evaluate`` (the path ``genbench metrics`` takes) on the same two sets of N images
(smooth random fields with noise, canonical [-1, 1]). Inside the job the timer starts after a
warm-up (kernel compile / cache load) and a barrier, and stops after a barrier, so interpreter
start-up and process-group set-up are not counted. On the CPU every process gets one thread
(``NUMBA_NUM_THREADS=1``, ``OMP_NUM_THREADS=1``): the speed-up then measures how well the work
divides, not how the kernel threads.

Printed: wall time and pairs/s of each job, the speed-up against one process, each rank's
CPU/wall (below ~0.95 a rank was waiting for a core: the machine was busy and the figure is
contaminated), the machine's load average before and after, and whether the DS value and every
image's nearest SSIM are identical (bitwise) to the one-process run.

    python benchmarks/bench_dist.py                         # N=1000 at 64 px, 1 vs 2 processes
    python benchmarks/bench_dist.py --n 400 --size 256      # paper resolution, fewer images
    python benchmarks/bench_dist.py --device cuda --procs 1 8   # one GPU vs eight (a GPU node)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_images(n: int, size: int, seed: int) -> np.ndarray:
    """(n, 1, size, size) float32 in [-1, 1]: blurred noise fields plus fine noise (as bench_ds)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        x = gaussian_filter(rng.standard_normal((size, size)), size / 85.0 + 0.5) * 12
        out[i, 0] = np.clip(x + 0.05 * rng.standard_normal((size, size)), -1, 1)
    return out


def worker(args: argparse.Namespace) -> None:
    import torch

    from genbench import distributed
    from genbench.imageset import ImageSet
    from genbench.metrics.pipeline import EvalOptions, evaluate
    from genbench.metrics.ssim import nearest_ssim

    job = distributed.init_from_env(args.device)
    real = ImageSet(torch.from_numpy(make_images(args.n, args.size, 1)))
    synth = ImageSet(torch.from_numpy(make_images(args.n, args.size, 2)))
    device = str(distributed.resolve_device(args.device, job))
    nearest_ssim(real.images[:8], device=device)  # compile / load the kernels before timing
    job.barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    report = evaluate(real, synth, EvalOptions(metrics=("ds",), device=args.device))
    job.barrier()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    cpus = job.gather_objects(cpu)
    if job.is_main:
        ds = report.metrics["ds"]
        if ds.status != "ok":
            raise SystemExit(f"DS {ds.status}: {ds.reason}")
        np.savez(args.out, near_r=ds.extra["nearest_ssim_real"], near_s=ds.extra["nearest_ssim_synth"])
        Path(args.out).with_suffix(".json").write_text(json.dumps(
            {"wall": wall, "cpu": cpus, "ds": ds.value, "world": job.world_size, "backend": job.backend,
             "device": device}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(procs: int, args: argparse.Namespace, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if args.device == "cpu":
        env.update(NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    # The worker's settings travel in the environment: torchrun would read "--n" as its own option.
    env["BENCH_DIST_WORKER"] = json.dumps({"n": args.n, "size": args.size, "device": args.device, "out": str(out)})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{procs}-process job failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    res = json.loads(out.with_suffix(".json").read_text())
    with np.load(out) as z:
        res["near_r"], res["near_s"] = z["near_r"], z["near_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="images per set (DS runs on two sets of N)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="processes per job; the first is the reference")
    ap.add_argument("--device", default="cpu", help="cpu (gloo, one thread per process) or cuda (NCCL, one GPU per process)")
    if "BENCH_DIST_WORKER" in os.environ:
        worker(argparse.Namespace(**json.loads(os.environ["BENCH_DIST_WORKER"])))
        return
    args = ap.parse_args()

    pairs = 2 * (args.n * (args.n - 1) // 2)
    print(f"# bench_dist  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"DS of two sets of N={args.n} at {args.size}x{args.size} px: {pairs:,} SSIM pairs, device {args.device}")
    load0 = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in args.procs:
            runs.append((p, launch(p, args, Path(tmp) / f"run{p}.npz")))
    load1 = os.getloadavg()
    ref_p, ref = runs[0]
    print(f"\n| processes | backend | wall s | pairs/s | speed-up vs {ref_p} | CPU/wall per rank | identical to {ref_p} |")
    print("|---|---|---|---|---|---|---|")
    for p, r in runs:
        same = (r["ds"] == ref["ds"] and np.array_equal(r["near_r"], ref["near_r"])
                and np.array_equal(r["near_s"], ref["near_s"]))
        busy = " ".join(f"{c / r['wall']:.2f}" for c in r["cpu"])
        print(f"| {p} | {r['backend'] or 'none'} | {r['wall']:.2f} | {pairs / r['wall']:,.0f} | "
              f"{ref['wall'] / r['wall']:.2f}x | {busy} | {'yes (bitwise)' if same else 'NO'} |")
    print(f"\nDS = {ref['ds']!r}; load average (1 min) before {load0[0]:.2f}, after {load1[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    starved = [p for p, r in runs if args.device == "cpu" and min(c / r["wall"] for c in r["cpu"]) < 0.95]
    if starved:
        print(f"warning: in the {', '.join(map(str, starved))}-process job(s) a rank got less than 95% of a core: "
              "other processes competed for the CPUs; the times are inflated and the speed-up is approximate.")


if __name__ == "__main__":
    main()
