"""Inception-v3 feature throughput: torch-fidelity's extractor vs genbench's fast path.

Same inputs, same (randomly initialised, Kaiming-normal) weights, same process, same threads;
the two are run alternately and the best of ``--repeats`` is kept for each, so machine noise
hits both alike. Prints images/s, the ratio (target >= 1.5x on CPU) and the largest feature
difference (must be <= 1e-4).

    .venv/bin/python benchmarks/bench_inception.py                 # 256 images at 64 and 256 px
    .venv/bin/python benchmarks/bench_inception.py --n 64 --sizes 64 --repeats 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def structured(n: int, size: int, seed: int) -> torch.Tensor:
    """Canonical (n, 1, size, size) float images: ellipses, gradients, texture, noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = torch.empty(n, 1, size, size)
    for i in range(n):
        r = torch.rand(8, generator=g)
        img = 0.4 * ((r[0] - 0.5) * xx + (r[1] - 0.5) * yy)
        img = img + torch.sigmoid((1 - ((xx - r[2] + 0.5) / (0.2 + r[3])) ** 2 - ((yy - r[4] + 0.5) / (0.2 + r[5])) ** 2) * 8)
        img = img + 0.15 * torch.sin(10 * r[6] * xx) * torch.cos(10 * r[7] * yy)
        img = img + 0.05 * torch.randn(size, size, generator=g)
        out[i, 0] = (img - 0.5).clamp(-1, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="images per size")
    ap.add_argument("--sizes", type=str, default="64,256", help="comma-separated input sizes")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from genbench.imageset import quantize_uint8
    from genbench.metrics.inception import InceptionFeatureExtractor, random_inception_state_dict

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "random-inception.pth"
        torch.save(random_inception_state_dict(seed=0), weights)
        ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=str(weights)).to(device)
        ours = InceptionFeatureExtractor(weights, device=device, batch_size=args.batch_size)

        def run_ref(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            # What torch-fidelity does per batch: uint8 RGB in, torch.no_grad.
            pools, logits = [], []
            with torch.no_grad():
                for b in quantize_uint8(x).expand(-1, 3, -1, -1).split(args.batch_size):
                    p, lg = ref(b.contiguous().to(device))
                    pools.append(p.cpu())
                    logits.append(lg.cpu())
            return torch.cat(pools).numpy(), torch.cat(logits).numpy()

        def run_ours(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            f = ours.extract(x)
            return f.pool3, f.logits

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, "
              f"n={args.n}, batch {args.batch_size}, best of {args.repeats}")
        print(f"{'size':>6} {'torch-fidelity img/s':>21} {'genbench img/s':>15} {'ratio':>7} "
              f"{'max |d pool3|':>14} {'max |d logits|':>15}")
        for size in (int(s) for s in args.sizes.split(",")):
            x = structured(args.n, size, seed=size)
            run_ref(x[: args.batch_size])  # warm-up (allocator, oneDNN kernels)
            run_ours(x[: args.batch_size])
            best = {"ref": float("inf"), "ours": float("inf")}
            outs = {}
            for _ in range(args.repeats):
                for name, fn in (("ref", run_ref), ("ours", run_ours)):
                    sync()
                    t0 = time.perf_counter()
                    outs[name] = fn(x)
                    sync()
                    best[name] = min(best[name], time.perf_counter() - t0)
            ips_ref, ips_ours = args.n / best["ref"], args.n / best["ours"]
            dp = np.abs(outs["ref"][0] - outs["ours"][0]).max()
            dl = np.abs(outs["ref"][1] - outs["ours"][1]).max()
            print(f"{size:>6} {ips_ref:>21.2f} {ips_ours:>15.2f} {ips_ours / ips_ref:>6.2f}x {dp:>14.2e} {dl:>15.2e}")


if __name__ == "__main__":
    main()
