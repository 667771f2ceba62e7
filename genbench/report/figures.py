"""Figures of a run (matplotlib, Agg backend; each as PNG and PDF under ``<run>/figures/``).

- ``samples``: a row of held-out real images, then a row of samples per model (the paper's Fig. 2).
- ``tsne``: the joint t-SNE embedding behind FDS, real vs synthetic, one panel per model.
- ``nearest_ssim``: histograms of nearest-neighbour SSIM (the DS inputs), real vs synthetic.
- ``losses``: training-loss curves from each model's ``losses.jsonl``.
- ``mem_histograms`` / ``mem_pairs``: the memorisation audit: nearest-training SSIM of held-out
  real vs synthetic images with the threshold, and each model's closest synthetic-training pairs
  (from ``<model>/mem_pairs.npz``).

Each figure reads only files the run wrote, so ``genbench report`` can redraw them later. A
figure whose inputs are missing (e.g. no FDS computed) is skipped, not faked.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from genbench.io.atomic import atomic_write_bytes
from genbench.report.tables import MODEL_ORDER

GRID_COLUMNS = 8
REAL_COLOR = "#1f77b4"
SYNTH_COLOR = "#d62728"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _models(results: dict[str, Any]) -> list[str]:
    names = [m for m, e in results.get("models", {}).items() if e and not e.get("error")]
    return sorted(names, key=lambda n: (MODEL_ORDER.index(n) if n in MODEL_ORDER else 99, n))


def _load_images(path: Path, k: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        arr = np.asarray(z["images"][:k], dtype=np.float32)
    return arr[:, 0] if arr.ndim == 4 else arr


def _save(fig: Any, folder: Path, name: str) -> list[Path]:
    plt = _plt()
    out = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        # Fixed metadata keeps PDFs byte-identical between identical runs.
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
        fig.savefig(buf, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
        out.append(atomic_write_bytes(folder / f"{name}.{ext}", buf.getvalue()))
    plt.close(fig)
    return out


def sample_grid(root: Path, results: dict[str, Any], columns: int = GRID_COLUMNS) -> Any | None:
    rows: list[tuple[str, np.ndarray]] = []
    real = _load_images(root / "real_preview.npz", columns)
    if real is not None:
        rows.append(("real", real))
    for m in _models(results):
        imgs = _load_images(root / m / "samples.npz", columns)
        if imgs is not None:
            rows.append((m, imgs))
    if len(rows) < 2:
        return None
    # One display window for every row, taken from the real images (CT in a [-1024, 3012] HU
    # range is otherwise near-black); samples are shown in the same window, so it stays fair.
    ref = rows[0][1] if real is not None else np.concatenate([r[1] for r in rows])
    lo, hi = (float(v) for v in np.percentile(ref, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = -1.0, 1.0
    plt = _plt()
    fig, axes = plt.subplots(len(rows), columns, figsize=(columns * 1.1, len(rows) * 1.15),
                             squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(imgs):
                ax.imshow(imgs[c], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{results.get('dataset')}: held-out real images and samples "
                 f"(display window {lo:.2f}..{hi:.2f} of [-1, 1])", fontsize=10)
    return fig


def _panel_grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def tsne_scatter(root: Path, results: dict[str, Any]) -> Any | None:
    panels = []
    for m in _models(results):
        p = root / m / "fds_embedding.npz"
        if p.is_file():
            with np.load(p, allow_pickle=False) as z:
                panels.append((m, np.asarray(z["embedding"]), int(z["n_real"])))
    if not panels:
        return None
    plt = _plt()
    nr, nc = _panel_grid(len(panels))
    fig, axes = plt.subplots(nr, nc, figsize=(3.4 * nc, 3.2 * nr), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (m, emb, n_real) in zip(axes.flat, panels):
        ax.scatter(emb[:n_real, 0], emb[:n_real, 1], s=6, c=REAL_COLOR, alpha=0.6, label="real")
        ax.scatter(emb[n_real:, 0], emb[n_real:, 1], s=6, c=SYNTH_COLOR, alpha=0.6,
                   label="synthetic")
        fds = (results["models"][m].get("metrics") or {}).get("metrics", {}).get("fds", {})
        val = fds.get("value")
        ax.set_title(m + ("" if val is None else f" (FDS {val:.3f})"), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes.flat[0].legend(fontsize=7, loc="best", markerscale=2)
    fig.suptitle("joint t-SNE of real and synthetic images", fontsize=10)
    fig.tight_layout()
    return fig


def ssim_histograms(root: Path, results: dict[str, Any]) -> Any | None:
    panels = []
    for m in _models(results):
        ds = (results["models"][m].get("metrics") or {}).get("metrics", {}).get("ds") or {}
        real, synth = ds.get("nearest_ssim_real"), ds.get("nearest_ssim_synth")
        if real and synth:
            panels.append((m, np.asarray(real), np.asarray(synth), ds.get("value")))
    if not panels:
        return None
    plt = _plt()
    nr, nc = _panel_grid(len(panels))
    fig, axes = plt.subplots(nr, nc, figsize=(3.4 * nc, 2.8 * nr), squeeze=False, sharex=True)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    # One x-axis for every panel, so the models' histograms can be compared by eye.
    lo = float(min(min(r.min(), s.min()) for _, r, s, _ in panels))
    hi = float(max(max(r.max(), s.max()) for _, r, s, _ in panels))
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 30)
    for ax, (m, real, synth, val) in zip(axes.flat, panels):
        ax.hist(real, bins=bins, alpha=0.55, color=REAL_COLOR, label="real", density=True)
        ax.hist(synth, bins=bins, alpha=0.55, color=SYNTH_COLOR, label="synthetic", density=True)
        ax.set_title(m + ("" if val is None else f" (DS {val:.3f})"), fontsize=9)
        ax.set_xlabel("nearest-neighbour SSIM", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("diversity: nearest-neighbour SSIM within each set", fontsize=10)
    fig.tight_layout()
    return fig


def read_losses(path: Path) -> list[dict[str, float]]:
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill; the engine rewrites the log on resume
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def loss_curves(root: Path, results: dict[str, Any]) -> Any | None:
    panels = []
    for m in _models(results):
        rows = read_losses(root / m / "losses.jsonl")
        if rows:
            panels.append((m, rows))
    if not panels:
        return None
    plt = _plt()
    nr, nc = _panel_grid(len(panels))
    fig, axes = plt.subplots(nr, nc, figsize=(3.6 * nc, 2.8 * nr), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (m, rows) in zip(axes.flat, panels):
        keys = sorted({k for r in rows for k in r if k != "step"})
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=k, linewidth=1)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle("training losses", fontsize=10)
    fig.tight_layout()
    return fig


FIGURES = {
    "samples": sample_grid,
    "tsne": tsne_scatter,
    "nearest_ssim": ssim_histograms,
    "losses": loss_curves,
}


def make_figures(root: Path, results: dict[str, Any]) -> list[Path]:
    """Draw every figure whose inputs exist; returns the written PNG and PDF paths."""
    root = Path(root)
    written: list[Path] = []
    for name, draw in FIGURES.items():
        fig = draw(root, results)
        if fig is not None:
            written.extend(_save(fig, root / "figures", name))
        else:
            for ext in ("png", "pdf"):  # a figure whose inputs are gone must not linger
                (root / "figures" / f"{name}.{ext}").unlink(missing_ok=True)
    return written


# --------------------------------------------------------------------------- memorisation (mem)

MEM_PAIRS_FILE = "mem_pairs.npz"  # <model>/mem_pairs.npz: the closest synthetic-training pairs


def _mem_entry(results: dict[str, Any], model: str) -> dict[str, Any]:
    return ((results["models"][model].get("metrics") or {}).get("metrics") or {}).get("mem") or {}


def _mem_title(model: str, entry: dict[str, Any]) -> str:
    val, ci = entry.get("value"), entry.get("ci")
    if val is None:
        return model
    text = f"{model}: {val:.1%} flagged"
    return text + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")


def mem_pairs(root: Path, results: dict[str, Any]) -> Any | None:
    """The most similar synthetic-training pairs of each model (synthetic above, training below)."""
    rows = []
    for m in _models(results):
        p = root / m / MEM_PAIRS_FILE
        if p.is_file():
            with np.load(p, allow_pickle=False) as z:
                rows.append((m, np.asarray(z["synth"]), np.asarray(z["train"]), np.asarray(z["ssim"]),
                             np.asarray(z["train_index"]), float(z["threshold"])))
    rows = [r for r in rows if len(r[1])]
    if not rows:
        return None
    k = max(len(r[1]) for r in rows)
    every = np.concatenate([np.concatenate([r[1], r[2]]).reshape(-1) for r in rows])
    lo, hi = (float(v) for v in np.percentile(every, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = -1.0, 1.0
    plt = _plt()
    fig, axes = plt.subplots(2 * len(rows), k, figsize=(k * 1.15, len(rows) * 2.55), squeeze=False)
    for r, (m, synth, train, ssim, tidx, tau) in enumerate(rows):
        for c in range(k):
            for j, (imgs, label) in enumerate(((synth, "synthetic"), (train, "training"))):
                ax = axes[2 * r + j, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c >= len(imgs):
                    ax.axis("off")
                    continue
                ax.imshow(imgs[c], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                flagged = ssim[c] > tau
                for s in ax.spines.values():
                    s.set_color(SYNTH_COLOR if flagged else "#bbbbbb")
                    s.set_linewidth(1.5 if flagged else 0.5)
                if j == 0:
                    ax.set_title(f"SSIM {ssim[c]:.3f}", fontsize=6.5,
                                 color=SYNTH_COLOR if flagged else "#333333")
                else:
                    ax.set_xlabel(f"train #{int(tidx[c])}", fontsize=6)
                if c == 0:
                    ax.set_ylabel(f"{m}\n{label}" if j == 0 else label, fontsize=7)
    fig.suptitle("memorisation: each model's most similar synthetic / training pairs (exact SSIM; "
                 "red = above the held-out threshold)", fontsize=9)
    fig.tight_layout()
    return fig


def mem_histograms(root: Path, results: dict[str, Any]) -> Any | None:
    """Nearest-training SSIM of held-out real vs synthetic images, with the flagging threshold."""
    panels = []
    for m in _models(results):
        e = _mem_entry(results, m)
        real, synth = e.get("nearest_train_ssim_real"), e.get("nearest_train_ssim_synth")
        if e.get("status") == "ok" and real and synth:
            panels.append((m, np.asarray(real), np.asarray(synth), float(e["params"]["threshold"]), e))
    if not panels:
        return None
    plt = _plt()
    nr, nc = _panel_grid(len(panels))
    fig, axes = plt.subplots(nr, nc, figsize=(3.4 * nc, 2.8 * nr), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    lo = min(min(p[1].min(), p[2].min()) for p in panels)
    hi = max(max(p[1].max(), p[2].max(), p[3]) for p in panels)
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 40)
    for ax, (m, real, synth, tau, e) in zip(axes.flat, panels):
        ax.hist(real, bins=bins, alpha=0.55, color=REAL_COLOR, label="held-out real", density=True)
        ax.hist(synth, bins=bins, alpha=0.55, color=SYNTH_COLOR, label="synthetic", density=True)
        ax.axvline(tau, color="black", linestyle="--", linewidth=1,
                   label=f"threshold (q={e['params'].get('quantile')})")
        ax.set_title(_mem_title(m, e), fontsize=8.5)
        ax.set_xlabel("SSIM to the nearest training image", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=6.5)
    fig.suptitle("memorisation: nearest-training SSIM, held-out real vs synthetic", fontsize=10)
    fig.tight_layout()
    return fig


FIGURES["mem_pairs"] = mem_pairs
FIGURES["mem_histograms"] = mem_histograms
