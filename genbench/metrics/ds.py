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
* smoothing, so that the KL is finite when the synthetic histogram has an empty bin where the
  real one has mass; two estimators (``estimator``):

  - ``"laplace"`` (default): an additive pseudo-count ``smoothing`` per bin on both histograms,
    ``p_k = (count_k + smoothing) / (n + smoothing * bins)``. An empty synthetic bin then still
    holds ``1 / (n + bins)``, so DS is at most about ``ln(n + bins)`` (about 6.8 for 830 held-out
    slices and 50 bins): bounded, and stable at small n.
  - ``"epsilon"`` (paper-compatible): the empirical frequencies plus a tiny ``epsilon`` per bin,
    renormalised, ``p_k = (count_k / n + epsilon) / (1 + epsilon * bins)`` (what
    ``scipy.stats.entropy(p + eps, q + eps)`` computes). An empty synthetic bin holds about
    ``epsilon``, so real mass there costs about ``ln(1 / epsilon)`` per unit (23 nats for the
    default 1e-10): the scale of the paper's DS values (up to 17.26), which Laplace smoothing
    cannot reach. It is unstable at small n (a single empty bin moves DS by several nats).

* DS = ``KL(P_real || P_synth) = sum_k p_k ln(p_k / q_k)`` in nats. Lower is better; 0 means the
  same histogram.

Confidence interval (``ds_replicates``): the per-image nearest SSIMs are resampled with
replacement (real and synthetic separately, see ``genbench.stats``) and DS is recomputed from the
resampled values; each image keeps the nearest SSIM it had in its full set, so the interval is
conditional on the sets' neighbour structure and no duplicate makes a spurious SSIM of 1.
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

ESTIMATORS = ("laplace", "epsilon")
DEFAULT_EPSILON = 1e-10
PAPER_ESTIMATOR = "epsilon"  # what the `paper` preset uses (comparable with the paper's DS scale)


def smooth_counts(counts: np.ndarray, *, smoothing: float, estimator: str = "laplace") -> np.ndarray:
    """Bin counts (..., bins) -> smoothed probabilities by ``estimator``; ``smoothing`` is the
    Laplace pseudo-count per bin or the epsilon added to each frequency."""
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum(axis=-1, keepdims=True)
    bins = c.shape[-1]
    if estimator == "laplace":
        return (c + smoothing) / (n + smoothing * bins)
    if estimator == "epsilon":
        return (c / n + smoothing) / (1.0 + smoothing * bins)
    raise UsageError(f"DS: smoothing estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")


def bin_indices(values: np.ndarray, *, bins: int, value_range: tuple[float, float]) -> tuple[np.ndarray, int]:
    """The bin of each value (np.histogram's convention: the last bin is closed), values outside the
    range clipped into the edge bins; and how many were outside."""
    lo, hi = value_range
    v = np.asarray(values, dtype=np.float64)
    outside = int(np.count_nonzero((v < lo) | (v > hi)))
    edges = np.linspace(lo, hi, bins + 1)
    idx = np.searchsorted(edges, np.clip(v, lo, hi), side="right") - 1
    return np.clip(idx, 0, bins - 1), outside


def smoothed_histogram(
    values: np.ndarray, *, bins: int, value_range: tuple[float, float], smoothing: float,
    estimator: str = "laplace",
) -> tuple[np.ndarray, int]:
    """Probabilities of ``values`` on ``bins`` equal bins of ``value_range``, smoothed by
    ``estimator`` (see the module docstring), and how many values lay outside the range (counted
    in the edge bins)."""
    lo, hi = value_range
    v = np.asarray(values, dtype=np.float64)
    outside = int(np.count_nonzero((v < lo) | (v > hi)))
    counts, _ = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    return smooth_counts(counts, smoothing=smoothing, estimator=estimator), outside


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats for discrete distributions; terms with p_k = 0 contribute 0."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    mask = p > 0
    if np.any(q[mask] <= 0):
        return float("inf")
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise KL(p_b || q_b) for strictly positive (B, bins) distributions."""
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def ds_replicates(near_real: np.ndarray, near_synth: np.ndarray, boot: Any, *, bins: int = 50,
                  value_range: tuple[float, float] = (0.0, 1.0), smoothing: float = 1.0,
                  estimator: str = "laplace") -> np.ndarray:
    """Bootstrap replicates of DS (``boot``: a ``genbench.stats.Bootstrap``) from the per-image
    nearest SSIMs: replicate i resamples both sets with ``boot``'s indices and recomputes DS."""
    from genbench.stats import REAL, SYNTH, counts

    br, _ = bin_indices(near_real, bins=bins, value_range=value_range)
    bs, _ = bin_indices(near_synth, bins=bins, value_range=value_range)
    out = np.empty(boot.replicates)
    chunk = 256
    for start in range(0, boot.replicates, chunk):
        stop = min(boot.replicates, start + chunk)
        cr = counts(br[boot.indices(len(br), REAL, start, stop)], bins)
        cs = counts(bs[boot.indices(len(bs), SYNTH, start, stop)], bins)
        out[start:stop] = kl_rows(smooth_counts(cr, smoothing=smoothing, estimator=estimator),
                                  smooth_counts(cs, smoothing=smoothing, estimator=estimator))
    return out


def _images(x: Any) -> torch.Tensor | np.ndarray:
    return x.images if hasattr(x, "images") else x


def compute_ds(
    real: torch.Tensor | np.ndarray,
    synth: torch.Tensor | np.ndarray,
    *,
    bins: int = 50,
    value_range: tuple[float, float] = (0.0, 1.0),
    smoothing: float | None = None,
    estimator: str = "laplace",
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    boot: Any = None,
) -> MetricResult:
    """DS between two canonical image sets (N, 1, H, W) (or ImageSets); see the module docstring.

    ``estimator``: "laplace" or "epsilon"; ``smoothing``: the Laplace pseudo-count (default 1)
    or the epsilon (default 1e-10). ``boot`` (a ``genbench.stats.Bootstrap``): adds ``ci``.
    ``progress(done, total)`` counts SSIM pairs over both sets together.
    """
    if estimator not in ESTIMATORS:
        raise UsageError(f"DS: smoothing estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if smoothing is None:
        smoothing = 1.0 if estimator == "laplace" else DEFAULT_EPSILON
    if bins < 1:
        raise UsageError(f"DS: bins must be >= 1, got {bins}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise UsageError(f"DS: value_range must be (low, high) with high > low, got {value_range}")
    if not smoothing > 0:
        what = "pseudo-count per bin" if estimator == "laplace" else "epsilon"
        raise UsageError(f"DS: smoothing ({what}) must be > 0, got {smoothing}")
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
    res = ds_from_nearest(near_r, near_s, bins=bins, value_range=(lo, hi), smoothing=smoothing,
                          estimator=estimator, boot=boot)
    res.elapsed_s = time.perf_counter() - t0
    return res


def ds_from_nearest(near_r: np.ndarray, near_s: np.ndarray, *, bins: int = 50,
                    value_range: tuple[float, float] = (0.0, 1.0), smoothing: float | None = None,
                    estimator: str = "laplace", boot: Any = None) -> MetricResult:
    """DS from the two sets' per-image nearest SSIMs (the part of ``compute_ds`` after SSIM)."""
    if smoothing is None:
        smoothing = 1.0 if estimator == "laplace" else DEFAULT_EPSILON
    t0 = time.perf_counter()
    lo, hi = float(value_range[0]), float(value_range[1])
    near_r, near_s = np.asarray(near_r, np.float64), np.asarray(near_s, np.float64)
    hist = {"bins": bins, "value_range": (lo, hi), "smoothing": smoothing, "estimator": estimator}
    p, out_r = smoothed_histogram(near_r, **hist)
    q, out_s = smoothed_histogram(near_s, **hist)
    value = kl_divergence(p, q)
    params: dict[str, Any] = {
        "bins": int(bins),
        "value_range": [lo, hi],
        "estimator": estimator,
        "smoothing": float(smoothing),
        "smoothing_kind": "additive pseudo-count per bin (Laplace)" if estimator == "laplace"
        else "epsilon added to each bin's frequency, renormalised (paper-compatible)",
        "kl": "KL(P_real || P_synth), nats",
        "clipped_real": out_r,
        "clipped_synth": out_s,
        "ssim": SSIMSettings().as_dict(),
    }
    res = MetricResult(
        name="ds",
        value=value,
        params=params,
        n_real=len(near_r),
        n_synth=len(near_s),
        extra={"nearest_ssim_real": near_r, "nearest_ssim_synth": near_s},
        json_extra=("nearest_ssim_real", "nearest_ssim_synth"),
    )
    if boot is not None and boot.enabled:
        from genbench.stats import attach_ci

        attach_ci(res, ds_replicates(near_r, near_s, boot, **hist), boot, bounds=(0.0, None))
    res.elapsed_s = time.perf_counter() - t0
    return res


def compute_ds_metric(ctx: Any) -> MetricResult:
    """Registry entry: each set's nearest SSIMs are memoised per whole set (PreparedReal reuses REAL's)."""
    t0 = time.perf_counter()
    nr, ns = len(ctx.real), len(ctx.synth)
    pairs_r, pairs_s = nr * (nr - 1) // 2, ns * (ns - 1) // 2
    with ctx.step("DS", pairs_r + pairs_s) as step:
        def nearest(offset: int) -> Any:
            return lambda images: nearest_ssim(
                images.images, device=ctx.device, dist=ctx.dist,
                progress=lambda done, _tot: step.absolute(offset + done, pairs_r + pairs_s))

        near_r = ctx.per_set("nearest-ssim", "real", nearest(0))
        near_s = ctx.per_set("nearest-ssim", "synth", nearest(pairs_r))
    res = ds_from_nearest(near_r, near_s, estimator=ctx.options.ds_smoothing, boot=ctx.boot)
    res.elapsed_s = time.perf_counter() - t0
    return res


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
