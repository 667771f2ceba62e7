"""Issue 17: runtime of the machine Turing test (c2st) on 2 x 500 images at 64 px.

Input: 500 pelvic phantom slices (real) and 500 other phantom slices with Gaussian noise
(synthetic), 64 x 64. Measured in this process:

- reference: one training epoch of the same network (forward + backward + Adam step over the
  800 images of one fold's training set, batches of 32, one thread), the unit of work c2st
  repeats; c2st costs about ``folds * epochs`` of them plus the prediction passes;
- c2st with the default options (5 folds, 12 epochs, no permutations), and optionally with
  ``--permutations B`` (then (1 + B) times the cross-validation).

Prints both times, their ratio, and the accuracy.

    python benchmarks/bench_c2st.py                  # 2 x 500 at 64 px
    python benchmarks/bench_c2st.py --n 200 --size 32
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime

import numpy as np
import torch


def phantoms(n: int, size: int, seed: int) -> torch.Tensor:
    from genbench.data.phantoms import generate_phantoms
    from genbench.data.presets import get_preset

    preset = get_preset("pelvic")
    img, _ = generate_phantoms("pelvic", n, size, seed=seed)
    x = torch.from_numpy(np.asarray(preset.mapping.to_canonical(img), dtype=np.float32))
    return x.clamp(-1, 1)[:, None]


def one_epoch(x: torch.Tensor, cfg) -> float:
    from genbench.metrics.c2st import C2STNet, _cpu_threads

    y = (torch.arange(len(x)) % 2).float()
    with _cpu_threads(1):
        torch.manual_seed(0)
        net = C2STNet(int(x.shape[-1]), cfg.width)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        t0 = time.perf_counter()
        for start in range(0, len(x), cfg.batch_size):
            opt.zero_grad()
            loss_fn(net(x[start:start + cfg.batch_size]), y[start:start + cfg.batch_size]).backward()
            opt.step()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="images per set")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=0.05, help="noise added to the 'synthetic' set")
    ap.add_argument("--permutations", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from genbench.metrics.c2st import C2STConfig, c2st_images

    print(f"# bench_c2st  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.machine()}  "
          f"python {sys.version.split()[0]}  torch {torch.__version__}  "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    real = phantoms(args.n, args.size, seed=1)
    g = torch.Generator().manual_seed(0)
    synth = (phantoms(args.n, args.size, seed=2)
             + args.sigma * torch.randn(args.n, 1, args.size, args.size, generator=g)).clamp(-1, 1)
    cfg = C2STConfig(permutations=args.permutations)
    train_n = (cfg.folds - 1) * 2 * args.n // cfg.folds
    ref = min(one_epoch(torch.cat([real, synth])[:train_n], cfg) for _ in range(2))
    print(f"reference: one training epoch over {train_n} images at {args.size} px: {ref:.2f} s")
    t0 = time.perf_counter()
    res = c2st_images(real, synth, cfg, seed=0, device=args.device)
    took = time.perf_counter() - t0
    print(f"c2st {args.n} + {args.n} at {args.size} px, {cfg.folds} folds x {cfg.epochs} epochs, "
          f"{cfg.permutations} permutations: {took:.1f} s = {took / ref:.1f} x the reference epoch "
          f"(expected ~{cfg.folds * cfg.epochs * (1 + cfg.permutations)} + prediction)")
    print(f"accuracy {res.accuracy.value:.3f} [{res.accuracy.ci[0]:.3f}, {res.accuracy.ci[1]:.3f}], "
          f"AUC {res.auc[0]:.3f}, per fold {[round(a, 3) for a in res.fold_accuracies]}"
          + (f", permutation p {res.p_permutation:.3f}" if res.p_permutation is not None else ""))


if __name__ == "__main__":
    main()
