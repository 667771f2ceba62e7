"""Validity study (issue 14): which metric sees which defect, on all four phantoms.

For each phantom: a held-out REAL set of ``--n`` images, a clean stand-in generator (``--n``
fresh real images from other patients: the size-matched floor) and seven defects at graded
severities (``genbench.validity.DEFECTS``). Every metric of the registry that can run here is
computed with its bootstrap CI; a defect is *seen* at a severity when the degraded set scores
worse than the clean one by the paired bootstrap test (Holm over the defect's severities,
alpha 0.05). Writes to ``--out`` (default ``reports/validity``):

    cells.json / cells.csv   every (modality, defect, severity, metric): value, CI, p, seen
    matrix.md                which metric sees which defect (phantoms seen / scored, lowest severity)
    matrix.png               the same as a figure
    curves.png               response curves with CIs (value relative to the clean set)
    study.json               settings, versions, timing

    python benchmarks/validity.py --overwrite             # regenerate the committed reference (slow: ~1 h)
    python benchmarks/validity.py --n 60 --modalities heart --defects noise,duplication --bootstrap 200

Phantoms are independent (each draws its own sets from ``--seed``), so the study can run as one
process per group of phantoms and be joined afterwards:

    python benchmarks/validity.py --modalities chest,heart --out /tmp/va &
    python benchmarks/validity.py --modalities pelvic,abdomen --out /tmp/vb &
    wait; python benchmarks/validity.py --merge /tmp/va /tmp/vb --overwrite   # writes --out

An ``--out`` folder that already holds a study is refused before any work starts unless
``--overwrite`` is given: a study is an hour of CPU and may be someone's only copy.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_outputs(out: Path, cells: list, settings: dict) -> None:
    from genbench.io.atomic import atomic_write_json, atomic_write_text
    from genbench.metrics.registry import REGISTRY
    from genbench.report.tables import without_home
    from genbench.validity import DEFECTS, detection

    out.mkdir(parents=True, exist_ok=True)
    rows = [c.to_json() for c in cells]
    for r in rows:  # committed data: the home folder of the machine that ran the study is noise
        r["reason"] = None if r["reason"] is None else without_home(r["reason"])
    atomic_write_json(out / "cells.json", {"settings": settings, "cells": rows})
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["modality", "defect", "severity", "metric", "status", "value", "ci_lo", "ci_hi", "p", "p_holm",
                "sees"])
    for r in rows:
        ci = r["ci"] or [None, None]
        w.writerow([r["modality"], r["defect"], r["severity"], r["metric"], r["status"], r["value"], ci[0], ci[1],
                    r["p"], r["p_holm"], int(r["sees"])])
    atomic_write_text(out / "cells.csv", buf.getvalue())
    det = detection(cells)
    metrics = [m for m in REGISTRY.names() if m in det]
    lines = ["# Which metric sees which defect",
             "",
             f"Phantoms: {', '.join(settings['modalities'])}; n = {settings['n']} real vs {settings['n']} "
             f"synthetic images at {settings['size']} px; {settings['bootstrap']} bootstrap replicates; a defect is "
             "seen when the degraded set is worse than the clean one (paired bootstrap, Holm over severities, "
             "alpha 0.05). Cell: phantoms where it is seen / phantoms scored, then the lowest severity seen "
             "(median over those phantoms). '—': blind on every phantom; 'n/a': the metric could not run here.",
             "",
             "| metric | " + " | ".join(DEFECTS[d].title for d in settings["defects"]) + " |",
             "|---|" + "---|" * len(settings["defects"])]
    for m in metrics:
        cells_md = []
        for d in settings["defects"]:
            e = det[m].get(d)
            if e is None or e["of"] == 0:
                cells_md.append("n/a")
                continue
            seen = [v for v in e["lowest"].values() if v is not None]
            if not seen:
                cells_md.append(f"— (0/{e['of']})")
                continue
            seen.sort()
            cells_md.append(f"{e['modalities']}/{e['of']} (≥ {seen[len(seen) // 2]:g})")
        lines.append(f"| {REGISTRY[m].title} | " + " | ".join(cells_md) + " |")
    missing: dict[str, str] = {}
    for c in cells:
        if c.status != "ok" and c.reason:
            missing.setdefault(c.metric, without_home(c.reason).split(". ")[0])
    by_reason: dict[str, list[str]] = {}
    for m, why in missing.items():
        if all(det[m].get(d, {}).get("of", 0) == 0 for d in settings["defects"]):
            by_reason.setdefault(why, []).append(REGISTRY[m].title)
    for why, titles in by_reason.items():
        lines += ["", f"{', '.join(titles)}: n/a because {why}."]
    lines += ["", "Severity units: " + "; ".join(f"{DEFECTS[d].title}: {DEFECTS[d].severity} "
                                                 f"({', '.join(f'{v:g}' for v in DEFECTS[d].levels)})"
                                                 for d in settings["defects"]) + "."]
    atomic_write_text(out / "matrix.md", "\n".join(lines) + "\n")
    _figures(out, cells, det, metrics, settings)


def _figures(out: Path, cells: list, det: dict, metrics: list[str], settings: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from genbench.metrics.registry import REGISTRY
    from genbench.validity import DEFECTS

    defects = settings["defects"]
    grid = np.full((len(metrics), len(defects)), np.nan)
    for i, m in enumerate(metrics):
        for j, d in enumerate(defects):
            e = det[m].get(d)
            if e and e["of"]:
                grid[i, j] = e["modalities"] / e["of"]
    fig, ax = plt.subplots(figsize=(1.3 * len(defects) + 2, 0.45 * len(metrics) + 1.5))
    im = ax.imshow(grid, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(defects)), [DEFECTS[d].title for d in defects], rotation=30, ha="right")
    ax.set_yticks(range(len(metrics)), [REGISTRY[m].title for m in metrics])
    for i in range(len(metrics)):
        for j in range(len(defects)):
            e = det[metrics[i]].get(defects[j])
            txt = "n/a" if not e or not e["of"] else f"{e['modalities']}/{e['of']}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="white" if not np.isnan(grid[i, j]) and grid[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, label="share of phantoms where the defect is seen")
    ax.set_title("Which metric sees which defect (paired bootstrap vs clean, Holm, α = 0.05)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "matrix.png", dpi=120)
    plt.close(fig)

    mods = settings["modalities"]
    metrics = [m for m in metrics if any(c.metric == m and c.status == "ok" for c in cells)]
    fig, axes = plt.subplots(len(metrics), len(defects), figsize=(2.2 * len(defects), 1.7 * len(metrics)),
                             squeeze=False, sharex="col")
    colours = dict(zip(mods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for i, m in enumerate(metrics):
        for j, d in enumerate(defects):
            ax = axes[i, j]
            for mod in mods:
                pts = sorted((c.severity, c) for c in cells if c.metric == m and c.modality == mod
                             and c.status == "ok" and c.defect in ("clean", d))
                if not pts:
                    continue
                xs = [s for s, _ in pts]
                ys = [c.value for _, c in pts]
                lo = [c.ci[0] if c.ci else c.value for _, c in pts]
                hi = [c.ci[1] if c.ci else c.value for _, c in pts]
                ax.plot(xs, ys, "-o", ms=2.5, lw=1, color=colours[mod], label=mod)
                ax.fill_between(xs, lo, hi, color=colours[mod], alpha=0.15, lw=0)
                seen = [s for s, c in pts if c.sees]
                ax.plot(seen, [c.value for s, c in pts if c.sees], "o", ms=4, mfc="none", color=colours[mod])
            if i == 0:
                ax.set_title(DEFECTS[d].title, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{REGISTRY[m].title} {REGISTRY[m].arrow}", fontsize=8)
            ax.tick_params(labelsize=6)
    handles, labels = next(((h, lab) for ax in axes.flat for h, lab in [ax.get_legend_handles_labels()] if h),
                           ([], []))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7)
    fig.suptitle("Response curves (band: CI; open circle: seen vs the clean set)", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)


def merge_studies(folders: list[Path]) -> tuple[dict, list]:
    """Cells and settings of several studies of disjoint phantoms with otherwise equal settings."""
    from genbench.validity import Cell

    parts = [json.loads((Path(f) / "cells.json").read_text()) for f in folders]
    varying = {"modalities", "elapsed_s", "date"}
    first = parts[0]["settings"]
    for f, part in zip(folders, parts):
        diff = sorted(k for k in set(first) | set(part["settings"])
                      if k not in varying and first.get(k) != part["settings"].get(k))
        if diff:
            raise SystemExit(f"{f}: settings differ from {folders[0]} in {', '.join(diff)}")
    modalities = [m for part in parts for m in part["settings"]["modalities"]]
    if len(set(modalities)) != len(modalities):
        raise SystemExit(f"the studies share phantoms: {modalities}")
    settings = {**first, "modalities": modalities,
                "elapsed_s": round(sum(p["settings"]["elapsed_s"] for p in parts), 1),
                "date": max(p["settings"]["date"] for p in parts)}
    cells = [Cell.from_json(r) for part in parts for r in part["cells"]]
    return settings, cells


STUDY_FILES = ("cells.json", "cells.csv", "matrix.md", "matrix.png", "curves.png", "study.json")


def refuse_existing_study(out: Path, overwrite: bool) -> None:
    """Stop (exit 2, one line) before hours of work would end by replacing a study already in ``out``."""
    present = [name for name in STUDY_FILES if (out / name).exists()]
    if present and not overwrite:
        print(f"error: --out {out} already holds a study ({', '.join(present)}); "
              "pass --overwrite to replace it or choose another --out", file=sys.stderr)
        raise SystemExit(2)


def main() -> None:
    import genbench
    from genbench.metrics.pipeline import EvalOptions
    from genbench.validity import DEFECTS, make_sets, score_defects

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modalities", default="chest,heart,pelvic,abdomen")
    ap.add_argument("--defects", default=",".join(DEFECTS))
    ap.add_argument("--metrics", default="all")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--inception-weights", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "validity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="DIR",
                    help="join studies of disjoint phantoms (their cells.json) into --out instead of running")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the study already in --out (refused otherwise)")
    args = ap.parse_args()
    refuse_existing_study(args.out, args.overwrite)
    if args.merge:
        settings, cells = merge_studies(args.merge)
        write_outputs(args.out, cells, settings)
        print(f"wrote {args.out} from {len(args.merge)} studies")
        return
    modalities = [m for m in args.modalities.split(",") if m]
    defects = [d for d in args.defects.split(",") if d]
    options = EvalOptions(metrics=args.metrics, bootstrap=args.bootstrap, inception_weights=args.inception_weights,
                          device="cpu", seed=args.seed)
    t0 = time.perf_counter()
    cells = []
    for mod in modalities:
        sets = make_sets(mod, n=args.n, size=args.size, seed=args.seed)
        cells += score_defects(sets, options, defects, seed=args.seed,
                               say=lambda m: print(f"[{time.perf_counter() - t0:7.0f} s] {m}", flush=True))
    settings = {"modalities": modalities, "defects": defects, "n": args.n, "size": args.size,
                "bootstrap": args.bootstrap, "seed": args.seed, "metrics": list(options.metrics),
                "inception_weights": None if args.inception_weights is None else str(args.inception_weights),
                "genbench_version": genbench.__version__, "python": platform.python_version(),
                "date": f"{datetime.now(UTC):%Y-%m-%d}", "elapsed_s": round(time.perf_counter() - t0, 1)}
    write_outputs(args.out, cells, settings)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
