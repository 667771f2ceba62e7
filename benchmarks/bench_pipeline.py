"""Issue 3, target 4: DS + FDS (Inception excluded) on N vs N images at 256x256, end to end.

Runs ``genbench.metrics.pipeline.evaluate`` with ``metrics=("fds", "ds")`` and the default
options (3 FDS seeds, perplexity 30, PCA 50) on two in-memory image sets, and prints the time of
each metric and the total against the 2-minute target. ``--cli`` instead writes both sets as
8-bit PNG folders and times ``genbench metrics REAL SYNTH --metrics fds,ds`` as a user runs it
(decoding included).

    python benchmarks/bench_pipeline.py              # 1,000 vs 1,000
    python benchmarks/bench_pipeline.py --n 400
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

TARGET_S = 120.0


def make_set(n: int, size: int, seed: int, offset: float) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    k = 24
    basis = (gaussian_filter(np.random.default_rng(99).standard_normal((k, size, size)), (0, 4, 4)) * 15)
    basis = basis.reshape(k, -1).astype(np.float32)
    z = (rng.standard_normal((n, k)) / 3 + offset).astype(np.float32)
    x = np.tanh(z @ basis) + 0.05 * rng.standard_normal((n, size * size), dtype=np.float32)
    return torch.from_numpy(np.clip(x, -1, 1).reshape(n, 1, size, size).astype(np.float32))


def run_in_process(real: torch.Tensor, synth: torch.Tensor) -> None:
    from genbench.imageset import ImageSet
    from genbench.metrics.pipeline import EvalOptions, evaluate

    t0 = time.perf_counter()
    report = evaluate(ImageSet(real), ImageSet(synth), EvalOptions(metrics=("fds", "ds")))
    total = time.perf_counter() - t0
    for name in ("ds", "fds"):
        r = report.to_json()["metrics"][name]
        print(f"{name}: value {r['value']:.4f}  std {r['std']}  status {r['status']}  {r['elapsed_s']:.1f} s")
    print(f"total {total:.1f} s  (target < {TARGET_S:.0f} s: {'met' if total < TARGET_S else 'NOT met'})")


def run_cli(real: torch.Tensor, synth: torch.Tensor) -> None:
    from genbench.io import write_png_folder

    with tempfile.TemporaryDirectory() as tmp:
        r, s = Path(tmp) / "real", Path(tmp) / "synth"
        write_png_folder(real, r)
        write_png_folder(synth, s)
        cmd = [sys.executable, "-m", "genbench", "metrics", str(r), str(s), "--metrics", "fds,ds",
               "--json", str(Path(tmp) / "out.json")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        total = time.perf_counter() - t0
        print(proc.stdout[-3000:])
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
        print(f"`genbench metrics` exit {proc.returncode}, total {total:.1f} s  "
              f"(target < {TARGET_S:.0f} s: {'met' if total < TARGET_S else 'NOT met'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cli", action="store_true")
    args = ap.parse_args()
    print(f"# bench_pipeline  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.machine()}"
          f"  python {sys.version.split()[0]}  {args.n} vs {args.n} at {args.size}x{args.size}")
    from genbench.metrics.ssim import nearest_ssim

    real, synth = make_set(args.n, args.size, 1, 0.0), make_set(args.n, args.size, 2, 0.05)
    nearest_ssim(real[:3])  # JIT / cache load outside the timing
    (run_cli if args.cli else run_in_process)(real, synth)


if __name__ == "__main__":
    main()
