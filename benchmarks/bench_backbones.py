"""DINOv2 ViT-B/14 (or another backbone) feature throughput, CPU and CUDA when available.

Random weights in Meta's file layout are written to a temporary file and loaded the way
``--backbone NAME:PATH`` loads them. Reference (same run): the bare timm architecture's forward
on the already preprocessed batch, i.e. the network alone; genbench's figure includes windowing,
8-bit quantisation, resizing and normalisation. Both are alternated, best of ``--repeats``.

    .venv/bin/python benchmarks/bench_backbones.py                       # dinov2-vit-b14, 32 images of 64 px
    .venv/bin/python benchmarks/bench_backbones.py --backbone swav-r50 --device cuda --n 256
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="dinov2-vit-b14")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default=None, help="default: cpu, and cuda too when available")
    args = ap.parse_args()

    from genbench.metrics import backbones as B

    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.n, 1, args.size, args.size, generator=g) * 2 - 1)
    print(f"{args.backbone}, {args.n} images of {args.size} px, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        torch.save(B.random_state_dict(args.backbone, seed=0), path)
        for dev in devices:
            ext = B.load_backbone(B.parse_backbone(f"{args.backbone}:{path}"), device=dev)
            ext.batch_size = args.batch_size
            window = B.FeatureWindow()
            pre = torch.cat([B.preprocess(window.apply(x[s:s + args.batch_size]), ext.spec)
                             for s in range(0, args.n, args.batch_size)])

            def ours(ext=ext, window=window, dev=dev) -> None:
                ext.extract(window.apply(x))
                if dev == "cuda":
                    torch.cuda.synchronize()

            @torch.inference_mode()
            def bare(ext=ext, pre=pre, dev=dev) -> None:
                for s in range(0, args.n, args.batch_size):
                    ext.net(pre[s:s + args.batch_size].to(dev))
                if dev == "cuda":
                    torch.cuda.synchronize()

            ours()  # warm-up (allocations, cuDNN autotuning)
            best = {"genbench": float("inf"), "network alone": float("inf")}
            for _ in range(args.repeats):
                for name, fn in (("genbench", ours), ("network alone", bare)):
                    t0 = time.perf_counter()
                    fn()
                    best[name] = min(best[name], time.perf_counter() - t0)
            rate = {k: args.n / v for k, v in best.items()}
            print(f"{dev:5s}: genbench {rate['genbench']:8.1f} img/s | network alone "
                  f"{rate['network alone']:8.1f} img/s | ratio {rate['genbench'] / rate['network alone']:.2f}")


if __name__ == "__main__":
    main()
