"""DS (diversity score): KL divergence between the real and synthetic nearest-SSIM histograms.

Within each set, every image's nearest SSIM is its maximum SSIM against all other images of the
same set (``ssim.nearest_ssim``). A set whose images are all alike (mode collapse, memorised
training images) has nearest SSIMs piled near 1; a set more varied than the real one has them
lower. DS compares the two distributions:

* histogram: ``bins`` equal-width bins on the fixed range ``value_range`` (default 50 bins on
  [0, 1], width 0.02). The edges do not depend on the synthetic set, so DS values of several
  models against the same real set are comparable. Values outside the range (SSIM can be
  negative, and float32 rounding can give 1 + 1e-8) are counted in the nearest edge bin; how
  many were is recorded in ``params``.
* smoothing: additive (Laplace) pseudo-count ``smoothing`` per bin on both histograms,
  ``p_k = (count_k + smoothing) / (n + smoothing * bins)``, so that the KL is finite when the
  synthetic histogram has an empty bin where the real one has mass.
* DS = ``KL(P_real || P_synth) = sum_k p_k ln(p_k / q_k)`` in nats. Lower is better; 0 means the
  same histogram.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.metrics.result import MetricResult
from genbench.metrics.ssim import Progress, SSIMSettings, nearest_ssim


def smoothed_histogram(
    values: np.ndarray, *, bins: int, value_range: tuple[float, float], smoothing: float
) -> tuple[np.ndarray, int]:
    """Probabilities of ``values`` on ``bins`` equal bins of ``value_range`` with additive
    smoothing, and how many values lay outside the range (counted in the edge bins)."""
    lo, hi = value_range
    v = np.asarray(values, dtype=np.float64)
    outside = int(np.count_nonzero((v < lo) | (v > hi)))
    counts, _ = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    p = (counts + smoothing) / (v.size + smoothing * bins)
    return p, outside


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats for discrete distributions; terms with p_k = 0 contribute 0."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    mask = p > 0
    if np.any(q[mask] <= 0):
        return float("inf")
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _images(x: Any) -> torch.Tensor | np.ndarray:
    return x.images if hasattr(x, "images") else x


def compute_ds(
    real: torch.Tensor | np.ndarray,
    synth: torch.Tensor | np.ndarray,
    *,
    bins: int = 50,
    value_range: tuple[float, float] = (0.0, 1.0),
    smoothing: float = 1.0,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> MetricResult:
    """DS between two canonical image sets (N, 1, H, W) (or ImageSets); see the module docstring.

    ``progress(done, total)`` counts SSIM pairs over both sets together.
    """
    if bins < 1:
        raise UsageError(f"DS: bins must be >= 1, got {bins}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise UsageError(f"DS: value_range must be (low, high) with high > low, got {value_range}")
    if not smoothing > 0:
        raise UsageError(f"DS: smoothing (pseudo-count per bin) must be > 0, got {smoothing}")
    t0 = time.perf_counter()
    xr, xs = _images(real), _images(synth)
    nr, ns = int(xr.shape[0]), int(xs.shape[0])
    pairs_r = nr * (nr - 1) // 2
    total = pairs_r + ns * (ns - 1) // 2

    def prog(offset: int) -> Progress | None:
        if progress is None:
            return None
        return lambda done, _tot: progress(offset + done, total)

    near_r = nearest_ssim(xr, device=device, progress=prog(0))
    near_s = nearest_ssim(xs, device=device, progress=prog(pairs_r))
    p, out_r = smoothed_histogram(near_r, bins=bins, value_range=(lo, hi), smoothing=smoothing)
    q, out_s = smoothed_histogram(near_s, bins=bins, value_range=(lo, hi), smoothing=smoothing)
    value = kl_divergence(p, q)
    params: dict[str, Any] = {
        "bins": int(bins),
        "value_range": [lo, hi],
        "smoothing": float(smoothing),
        "smoothing_kind": "additive pseudo-count per bin (Laplace)",
        "kl": "KL(P_real || P_synth), nats",
        "clipped_real": out_r,
        "clipped_synth": out_s,
        "ssim": SSIMSettings().as_dict(),
    }
    return MetricResult(
        name="ds",
        value=value,
        params=params,
        elapsed_s=time.perf_counter() - t0,
        n_real=nr,
        n_synth=ns,
        extra={"nearest_ssim_real": near_r, "nearest_ssim_synth": near_s},
        json_extra=("nearest_ssim_real", "nearest_ssim_synth"),
    )


@contextmanager
def rich_progress(description: str, unit: str = "pairs") -> Iterator[Progress]:
    """A rich progress bar with throughput (``unit``/s), as a ``progress(done, total)`` callback."""
    from rich.progress import (
        BarColumn,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )
    from rich.text import Text

    class _Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} {unit}/s", style="progress.data.speed")

    with RichProgress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), _Rate(),
        TimeRemainingColumn(), transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
