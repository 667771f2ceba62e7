"""MT-DDPM sampling speed: seconds per image and images per second, per sampler and step count.

The quick network is timed end to end (untrained weights: the cost of a step does not depend on
the weights). The paper network (the authors' SwinVITModel, 116,042,570 parameters) is timed per
forward pass and extrapolated to each chain: 500 ancestral steps (the ``paper`` diffusion
setting, the configuration behind the paper's 220 s per image) and 50 (the ``authors`` setting;
their notebook printed 7.4 s for 4 images on their GPU), unless ``--paper-full`` asks for
complete (slow on CPU) chains.

    .venv/bin/python benchmarks/bench_sampling.py                  # quick + paper forward pass
    .venv/bin/python benchmarks/bench_sampling.py --device cuda --paper-full
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from mtddpm.model import create


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_sampling(model, n: int, sampler: str, steps: int, batch: int) -> float:
    _sync(model.device)
    t0 = time.perf_counter()
    model.sample(n, seed=0, batch_size=batch, sampler=sampler, steps=steps)
    _sync(model.device)
    return time.perf_counter() - t0


@torch.no_grad()
def time_forward(model, batch: int, repeats: int) -> float:
    r = model.config.resolution
    x = torch.randn(batch, 1, r, r, device=model.device)
    t = torch.full((batch,), 500.0, device=model.device)
    model.net_ema(x, t)  # warm-up (allocations, kernels)
    _sync(model.device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.net_ema(x, t)
    _sync(model.device)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=150, help="images per quick-network run")
    ap.add_argument("--batch", type=int, default=150)
    ap.add_argument("--paper-repeats", type=int, default=2)
    ap.add_argument("--paper-full", action="store_true", help="run whole paper chains (GPU)")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--plan", default="ancestral:50,ddim:50,ddim:20,dpm-solver++:20",
                    help="quick-network runs as sampler:steps, comma-separated (at most 50 steps: "
                         "the quick preset trains on the authors' 50-step chain)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    rows = []
    quick = create("quick", device=args.device)
    plan = [(p.split(":")[0], int(p.split(":")[1])) for p in args.plan.split(",")]
    for sampler, steps in plan:
        s = time_sampling(quick, args.n, sampler, steps, args.batch)
        rows.append(dict(network="quick", sampler=sampler, steps=steps, batch=args.batch, n=args.n,
                         s_per_image=s / args.n, images_per_s=args.n / s, measured="full chain"))
    if not args.skip_paper:
        paper = create("paper", device=args.device)
        for batch in (1,) if not args.paper_full else (1, 4, 8):
            fwd = time_forward(paper, batch, args.paper_repeats)
            for sampler, steps in [("ancestral", 500), ("ancestral", 50), ("ddim", 50), ("dpm-solver++", 20)]:
                rows.append(dict(network="paper", sampler=sampler, steps=steps, batch=batch, n=batch,
                                 s_per_image=fwd * steps / batch, images_per_s=batch / (fwd * steps),
                                 measured=f"forward {fwd:.3f} s x {steps} steps (extrapolated)"))
        if args.paper_full:
            for sampler, steps, n in [("ancestral", 500, 8), ("ancestral", 50, 4), ("dpm-solver++", 20, 8)]:
                s = time_sampling(paper, n, sampler, steps, n)
                rows.append(dict(network="paper", sampler=sampler, steps=steps, batch=n, n=n,
                                 s_per_image=s / n, images_per_s=n / s, measured="full chain"))
        params = {"quick": quick.num_parameters(), "paper": paper.num_parameters()}
    else:
        params = {"quick": quick.num_parameters()}

    print(f"device: {args.device} ({platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads); parameters: {params}")
    print(f"{'network':8} {'sampler':13} {'steps':>5} {'batch':>5} {'s/image':>10} {'images/s':>10}  how")
    for r in rows:
        print(f"{r['network']:8} {r['sampler']:13} {r['steps']:5d} {r['batch']:5d} "
              f"{r['s_per_image']:10.4f} {r['images_per_s']:10.3f}  {r['measured']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": args.device, "parameters": params, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
