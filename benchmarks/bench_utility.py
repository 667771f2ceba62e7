"""The utility experiment's classifier: training speed and accuracy on the labelled chest phantom.

``speed``: optimiser steps per second of the quick classifier (``resnet18-narrow``) at 32 px for
memory formats (NCHW vs channels-last) x batch sizes x thread counts, each timed in the same run,
and the images/s ratio of every setting against NCHW at the same batch size and threads.

``accuracy``: the real-only condition of the experiment (train on the phantom's training split,
test on its held-out patients, ``--seeds`` classifier seeds, the library's bootstrap CI), i.e.
how hard the phantom's finding is for the configured classifier at ``--size``.

    .venv/bin/python benchmarks/bench_utility.py speed
    .venv/bin/python benchmarks/bench_utility.py accuracy --size 32 --n 600
    .venv/bin/python benchmarks/bench_utility.py accuracy --size 64 --n 600
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F


def speed(args: argparse.Namespace) -> None:
    from genbench.utility.classifier import augment, build_classifier, classifier_config

    rows = []
    threads_list = sorted({1, torch.get_num_threads()})
    for threads in threads_list:
        torch.set_num_threads(threads)
        for batch in args.batches:
            per = {}
            for cl in (False, True):
                cfg = classifier_config("quick", arch=args.arch, channels_last=cl, batch_size=batch)
                torch.manual_seed(0)
                net = build_classifier(cfg.arch, 2)
                if cl:
                    net = net.to(memory_format=torch.channels_last)
                opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
                x = torch.rand(batch, 1, args.size, args.size) * 2 - 1
                y = torch.arange(batch) % 2
                gen = torch.Generator().manual_seed(0)

                def step() -> None:
                    xb = augment(x, cfg, gen)
                    if cl:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    loss = F.cross_entropy(net(xb), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                for _ in range(args.warmup):
                    step()
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                dt = (time.perf_counter() - t0) / args.steps
                per[cl] = batch / dt
                rows.append({"threads": threads, "batch": batch, "channels_last": cl,
                             "s_per_step": round(dt, 4), "images_per_s": round(batch / dt, 1)})
            rows[-1]["ratio_vs_nchw"] = round(per[True] / per[False], 3)
            print(f"threads {threads} batch {batch:4d}: NCHW {per[False]:8.1f} img/s, "
                  f"channels-last {per[True]:8.1f} img/s, ratio {per[True] / per[False]:.2f}x",
                  flush=True)
    print(json.dumps({"arch": args.arch, "size": args.size, "torch": torch.__version__,
                      "machine": platform.processor() or platform.machine(), "rows": rows}))


def accuracy(args: argparse.Namespace) -> None:
    from genbench.data import prepare_dataset
    from genbench.utility import Labelled, UtilityConfig, classifier_config
    from genbench.utility.experiment import PredictionCache, patient_groups, predictions
    from genbench.utility.stats import Resampler, summarise

    t0 = time.perf_counter()
    ds = prepare_dataset("chest", size=args.size, n=args.n, seed=args.data_seed,
                         options={"labels": "phantom", "finding_strength": args.strength})
    cfg = UtilityConfig(classifier_config(args.preset, **({"arch": args.arch} if args.arch else {}),
                                          **({"steps": args.steps} if args.steps else {})),
                        seeds=args.seeds)
    train = Labelled(ds.train.images, ds.train_labels)
    test = Labelled(ds.test.images, ds.test_labels)
    groups = patient_groups(ds.test.sources)
    preds, spent = predictions(train, test, 2, cfg, PredictionCache(None), "real", print)
    out = summarise(preds, test.labels, Resampler(groups, cfg.seeds, cfg.n_boot), cfg.ci_level)
    print(f"{ds.description}; {cfg.classifier.arch}, {cfg.classifier.steps} steps, "
          f"{cfg.seeds} seeds; train {len(train)} / test {len(test)} images "
          f"({len(np.unique(groups))} patients); training {spent:.1f} s, total "
          f"{time.perf_counter() - t0:.1f} s")
    for m, e in out.items():
        print(f"  {m:12s} {e['value']:.3f}  95% CI [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]  "
              f"per seed {', '.join(f'{v:.3f}' for v in e['per_seed'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--arch", default="resnet18-narrow")
    s.add_argument("--size", type=int, default=32)
    s.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128])
    s.add_argument("--steps", type=int, default=15)
    s.add_argument("--warmup", type=int, default=3)
    a = sub.add_parser("accuracy")
    a.add_argument("--size", type=int, default=32)
    a.add_argument("--n", type=int, default=600)
    a.add_argument("--seeds", type=int, default=3)
    a.add_argument("--preset", default="quick")
    a.add_argument("--arch", default=None)
    a.add_argument("--steps", type=int, default=None)
    a.add_argument("--strength", type=float, default=1.0)
    a.add_argument("--data-seed", type=int, default=0)
    args = ap.parse_args()
    {"speed": speed, "accuracy": accuracy}[args.cmd](args)


if __name__ == "__main__":
    main()
