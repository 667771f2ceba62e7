"""How many quick-preset samples are blank, washed out or saturated, judged against held-out
real images (issue 16: at most 2 %).

A sample is flagged when it is

- *near-constant*: its pixel standard deviation is below a quarter of the smallest one among the
  real images;
- *saturated*: more than half of its pixels sit at the upper clip limit (>= 1 - 1e-3); the lower
  limit is not counted (CT air and MRI background are -1 by construction);
- *washed out / off-range*: its mean intensity lies more than ``margin`` (default 0.1 of the
  [-1, 1] range, i.e. 0.2) outside the [min, max] of the real images' means.

    PYTHONPATH=. python benchmarks/quick_samples.py --model mt-ddpm --datasets pelvic,heart \
        [--set diffusion=paper] [--steps 1000] [--out /tmp/quick-samples]

Trains the quick preset on each phantom (resuming from ``--out`` when run again), draws as many
samples as there are held-out images (seed 0, as ``genbench run`` does for its first chunk) and
prints the flagged fractions.

    PYTHONPATH=. python benchmarks/quick_samples.py --run runs/heart/quick [--run runs/pelvic/quick]

judges the samples a finished ``genbench run`` already drew (every model of each run folder),
against the held-out set that run was scored on; nothing is trained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def bad_sample_flags(synth: torch.Tensor, real: torch.Tensor, margin: float = 0.2) -> dict[str, torch.Tensor]:
    """Boolean flags per synthetic image (N,) for each defect, and ``bad`` = any of them."""
    s = synth.flatten(1).double()
    r = real.flatten(1).double()
    std_floor = 0.25 * float(r.std(dim=1).min())
    real_means = r.mean(dim=1)
    lo, hi = float(real_means.min()) - margin, float(real_means.max()) + margin
    flags = {
        "constant": s.std(dim=1) < std_floor,
        "saturated": (s >= 1.0 - 1e-3).double().mean(dim=1) > 0.5,
        "off_range": (s.mean(dim=1) < lo) | (s.mean(dim=1) > hi),
    }
    flags["bad"] = flags["constant"] | flags["saturated"] | flags["off_range"]
    return flags


def judge_runs(run_dirs: list[Path]) -> None:
    from genbench.turing.study import load_run_sets

    for run in run_dirs:
        for model_dir in sorted(p.parent for p in run.glob("*/samples.npz")):
            real, synth, info = load_run_sets(model_dir)
            flags = bad_sample_flags(synth.images, real.images)
            row = {"dataset": info["dataset"], "model": info["model"], "n": len(synth),
                   **{k: float(v.double().mean()) for k, v in flags.items()}}
            print(json.dumps(row), flush=True)


def main() -> None:
    from genbench.data import prepare_dataset
    from genbench.protocol import create_generator
    from genbench.runner import parse_overrides

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mt-ddpm")
    ap.add_argument("--datasets", default="pelvic,heart,abdomen,chest")
    ap.add_argument("--set", action="append", default=[], help="key=value config override")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/genbench-quick-samples")
    ap.add_argument("--run", action="append", default=[], type=Path, metavar="RUN_DIR",
                    help="judge the samples of a finished genbench run instead of training")
    args = ap.parse_args()
    if args.run:
        judge_runs(args.run)
        return
    overrides = parse_overrides(args.set)
    rows = []
    for ds in args.datasets.split(","):
        data = prepare_dataset(ds, size=32, seed=args.seed, cache_dir=Path(args.out) / ".data")
        gen = create_generator(args.model, "quick", 32, device="cpu", **overrides)
        work = Path(args.out) / ds / args.model / json.dumps(overrides, sort_keys=True).replace(" ", "")
        t0 = time.time()
        gen.fit(data.train, workdir=work, steps=args.steps, seed=args.seed)
        t_fit = time.time() - t0
        t0 = time.time()
        synth = gen.sample(len(data.test), seed=args.seed * 1_000_003)
        t_sample = time.time() - t0
        torch.save({"synth": synth}, work / "samples.pt")
        flags = bad_sample_flags(synth, data.test.images)
        row = {"dataset": ds, "n": len(synth), **{k: float(v.double().mean()) for k, v in flags.items()},
               "fit_s": round(t_fit, 1), "sample_s": round(t_sample, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
