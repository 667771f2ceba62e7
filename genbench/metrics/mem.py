"""Memorisation audit (``mem``): how many synthetic images are copies of training images.

Every other metric compares synthetic images with the *held-out* real set, so a generator that
returns its training images scores at the real-vs-real floor. ``mem`` compares them with the
*training* set and calibrates on real data:

1. **Nearest training image.** For every synthetic image and every held-out real image, its
   maximum similarity over all training images and which training image attains it, by
   - ``ssim``: exact SSIM, the definition of DS (scikit-image's ``structural_similarity``,
     Gaussian sigma 1.5, data range 2), through the DS engine cross-set
     (``ssim.nearest_ssim_cross``): the measure that decides;
   - ``pearson``: the pixel Pearson correlation (Akbar et al. 2025's measure), reported beside it
     with its own threshold and flagged fraction;
   - ``inception``: minus the Euclidean distance of Inception-v3 pool3 features, when the caller
     has them (weights present); reported beside it, never required.
   With ``transforms`` the training set is searched also horizontally flipped (``flip``) and/or
   translated by every (dy, dx) with |dy|, |dx| <= K (``shiftK``): a copy of an augmented view
   then counts as a copy. Shifted views are compared on the central (H - 2K) x (W - 2K) crop
   (all measures, all views, REAL and SYNTH alike), which a shifted copy shares exactly with its
   source whatever the generator put into the uncovered border. Each view multiplies the cost
   (x2 for flip, x(2K + 1)^2 for shiftK); the default is none.
2. **Calibration.** The held-out real images are new images from the real distribution: their
   nearest-training similarities say how close a *new* image comes to the training set. The
   threshold ``tau`` is their conformal ``quantile``: the k-th smallest of the n values with
   ``k = ceil(quantile * (n + 1))`` (k = n when that exceeds n). For a synthetic image that is
   exchangeable with the real ones (an ideal generator), ``P(similarity > tau) =
   (n + 1 - k) / (n + 1)`` exactly (ties aside), which is ``1 - quantile`` for n >= 99 and
   ``1 / (n + 1)`` below; this rate is reported as ``ideal_rate``.
3. **Value.** ``value`` = fraction of synthetic images whose nearest-training SSIM exceeds
   ``tau`` (strictly): 0 is best, an ideal generator scores about ``ideal_rate``, a copier 1.
   CI (``ci_method``): the envelope of two intervals. The exact binomial (Clopper-Pearson)
   interval over the synthetic images at the calibrated threshold (``ci_binomial``), and the
   project's bootstrap over images (``genbench.stats``; ``ci_bootstrap``): real and synthetic
   images resampled, the threshold recomputed from the resampled real values, percentile
   interval recentred on the estimate. The bootstrap carries the threshold's own sampling error
   but collapses at 0 and 1 (a set of copies resamples to a set of copies); the exact interval
   does not. The bootstrap replicates are kept, so two models scored against one REAL get a
   paired test. Without a bootstrap the CI is the exact interval. Also recorded: the median
   ratio synthetic / real of the nearest-training SSIM, the same verdict for the other measures
   (``by_measure``), and every flagged synthetic image with its training partner (``flagged``).

Limits: similarity in pixels catches copies, noisy copies and (with ``transforms``) flipped and
shifted copies; it does not catch a copy under a large deformation, a crop, or an intensity
change that SSIM and correlation punish. Held-out slices of one patient are correlated, so the
calibration's effective size is closer to the number of held-out patients than of images.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genbench.errors import InputError, UsageError
from genbench.metrics.result import MetricResult
from genbench.metrics.ssim import WIN, Progress, SSIMSettings, nearest_ssim_cross

DEFAULT_QUANTILE = 0.99
TOP_PAIRS = 8  # most similar synthetic-training pairs kept for the report figure
MEASURES = ("ssim", "pearson", "inception")
CI_BOOTSTRAP = ("bootstrap over images (real and synthetic resampled, threshold recomputed per "
                "replicate), percentile interval recentred on the estimate")
CI_ENVELOPE = ("the envelope of the exact binomial (Clopper-Pearson) interval at the calibrated "
               "threshold and the bootstrap over images (real and synthetic resampled, threshold "
               "recomputed per replicate; percentile interval recentred on the estimate)")
CI_BINOMIAL = ("exact binomial (Clopper-Pearson) over the synthetic images at the calibrated "
               "threshold (excludes the threshold's own sampling error)")


@dataclass
class Nearest:
    """One set's nearest training images under one measure: similarity, partner, transform."""

    value: np.ndarray  # float64 (N,), higher = more similar
    index: np.ndarray  # int64 (N,), index into the training set
    transform: np.ndarray  # int64 (N,), index into the transform list ("identity" first)

    def subset(self, rows: Any) -> Nearest:
        rows = np.asarray(rows)
        return Nearest(self.value[rows], self.index[rows], self.transform[rows])

    def __len__(self) -> int:
        return int(self.value.size)


# ---------------------------------------------------------------------------------------------
# Transforms of the training set.


@dataclass(frozen=True)
class Transform:
    """A training image seen horizontally flipped (``flip``) and/or shifted by (dy, dx) pixels."""

    flip: bool = False
    dy: int = 0
    dx: int = 0

    @property
    def name(self) -> str:
        parts = (["flip"] if self.flip else []) + ([f"shift{self.dy:+d},{self.dx:+d}"]
                                                    if (self.dy, self.dx) != (0, 0) else [])
        return "+".join(parts) or "identity"


def parse_transforms(spec: str | None) -> tuple[Transform, ...]:
    """'none' | comma list of 'flip', 'shiftK' -> the transforms searched, identity first.

    'shiftK' means every integer translation (dy, dx) with |dy|, |dx| <= K: (2K + 1)^2 views,
    doubled by 'flip'. The search cost grows by the same factor.
    """
    flip, shift = False, 0
    for raw in (spec or "none").split(","):
        item = raw.strip().lower()
        if item in ("", "none"):
            continue
        if item == "flip":
            flip = True
        elif m := re.fullmatch(r"shift(\d+)", item):
            shift = max(shift, int(m.group(1)))
            if not 1 <= shift <= 8:
                raise UsageError(f"--mem-transforms: shift must be 1..8 pixels, got {item!r}")
        else:
            raise UsageError(f"--mem-transforms: unknown transform {raw.strip()!r}; "
                             "use none or a comma list of flip, shift1 .. shift8")
    offsets = sorted(((dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)),
                     key=lambda o: (o != (0, 0), abs(o[0]) + abs(o[1]), o))
    return tuple(Transform(f, dy, dx) for f in ((False, True) if flip else (False,)) for dy, dx in offsets)


def margin(transforms: tuple[Transform, ...]) -> int:
    """Pixels cropped from every border of the compared views: the largest shift."""
    return max((max(abs(t.dy), abs(t.dx)) for t in transforms), default=0)


def query_view(x: torch.Tensor, k: int) -> torch.Tensor:
    """The central crop of (..., H, W) images that shifted views are compared on (all of it for k=0)."""
    if k == 0:
        return x
    return x[..., k:x.shape[-2] - k, k:x.shape[-1] - k].contiguous()


def reference_view(x: torch.Tensor, t: Transform, k: int) -> torch.Tensor:
    """Training images as a synthetic image would show them under ``t``, on the central crop.

    An image shifted by (dy, dx), ``s[r, c] = x[r - dy, c - dx]``, has on rows/columns k .. H-k
    exactly the pixels of ``x`` at rows/columns k-dy .. H-k-dy: cropped, not padded, so whatever
    a generator put into the uncovered border never matters.
    """
    if t.flip:
        x = torch.flip(x, dims=(-1,))
    h, w = x.shape[-2:]
    return x[..., k - t.dy:h - k - t.dy, k - t.dx:w - k - t.dx].contiguous()


def display_view(x: torch.Tensor, t: Transform) -> torch.Tensor:
    """A full-size training image under ``t`` for figures (edge pixels repeated into the border)."""
    if t.flip:
        x = torch.flip(x, dims=(-1,))
    h, w = x.shape[-2:]
    rows = (torch.arange(h) - t.dy).clamp(0, h - 1)
    cols = (torch.arange(w) - t.dx).clamp(0, w - 1)
    return x[..., rows, :][..., cols].contiguous()


# ---------------------------------------------------------------------------------------------
# Nearest training image, per measure.


def _stack(x: Any) -> torch.Tensor:
    t = x.images if hasattr(x, "images") else x
    t = torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t
    t = t.detach().to("cpu", torch.float32)
    return t[:, 0] if t.ndim == 4 else t


def _normalised(x: torch.Tensor) -> torch.Tensor:
    """Rows centred and scaled to unit norm (float64 arithmetic, float32 out); constant rows -> 0."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    # Exactly constant rows by max == min: their float64 mean need not equal the value exactly,
    # and the rounding residue would normalise to a spurious non-zero vector.
    constant = (x.amax(dim=1) == x.amin(dim=1))[:, None]
    x = x - x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    ok = ~constant & (norm > 0)
    return torch.where(ok, x / torch.where(ok, norm, 1.0), 0.0).to(torch.float32)


def nearest_pearson(queries: Any, refs: Any, *, device: str | torch.device = "cpu",
                    block: int = 512, progress: Progress | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each query image's maximum pixel Pearson correlation over the reference images, and its index.

    Correlation of the flattened pixels, as ``scipy.stats.pearsonr``: each image is centred and
    scaled to unit norm once per block (float64 arithmetic, float32 storage), and a block of
    correlations is one float32 matrix product (error ~1e-6). A constant image has no defined
    correlation; it is given 0 against everything. Ties: the lowest reference index.
    Memory: one block of each set and a block x block matrix, never N_q x N_r.
    """
    q, r = _stack(queries), _stack(refs)
    dev = torch.device(device)
    nq, nr = q.shape[0], r.shape[0]
    best = np.full(nq, -np.inf)
    arg = np.full(nq, -1, dtype=np.int64)
    done, total = 0, nq * nr
    with torch.inference_mode():
        for i0 in range(0, nq, block):
            zq = _normalised(q[i0:i0 + block]).to(dev)
            cur_v = torch.full((zq.shape[0],), -math.inf, dtype=torch.float32, device=dev)
            cur_j = torch.zeros(zq.shape[0], dtype=torch.int64, device=dev)
            for j0 in range(0, nr, block):
                zr = _normalised(r[j0:j0 + block]).to(dev)
                v, j = (zq @ zr.T).max(dim=1)  # first maximum within the block
                better = v > cur_v  # strict: an earlier block keeps a tie
                cur_v = torch.where(better, v, cur_v)
                cur_j = torch.where(better, j + j0, cur_j)
                done += zq.shape[0] * zr.shape[0]
                if progress is not None:
                    progress(done, total)
            best[i0:i0 + block] = cur_v.cpu().numpy()
            arg[i0:i0 + block] = cur_j.cpu().numpy()
    return best, arg


def nearest_feature_distance(queries: np.ndarray, refs: np.ndarray, *, block: int = 1024
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Each query feature vector's smallest Euclidean distance to the reference vectors, and its index.

    float64, ``|q|^2 + |r|^2 - 2 q.r`` clipped at 0 before the square root.
    """
    q = np.asarray(queries, dtype=np.float64)
    r = np.asarray(refs, dtype=np.float64)
    rn = np.einsum("ij,ij->i", r, r)
    dist = np.empty(len(q))
    arg = np.empty(len(q), dtype=np.int64)
    for i0 in range(0, len(q), block):
        qb = q[i0:i0 + block]
        d2 = np.einsum("ij,ij->i", qb, qb)[:, None] + rn[None, :] - 2.0 * (qb @ r.T)
        j = d2.argmin(axis=1)
        arg[i0:i0 + block] = j
        dist[i0:i0 + block] = np.sqrt(np.maximum(d2[np.arange(len(qb)), j], 0.0))
    return dist, arg


def _max_over_transforms(one: Callable[[torch.Tensor, torch.Tensor, Progress | None], tuple[np.ndarray, np.ndarray]],
                         queries: torch.Tensor, train: torch.Tensor, transforms: tuple[Transform, ...],
                         progress: Progress | None) -> Nearest:
    """Running maximum of ``one(query_view, reference_view)`` over the transforms (the first
    transform in the list wins ties)."""
    n = queries.shape[0]
    best = np.full(n, -np.inf)
    idx = np.full(n, -1, dtype=np.int64)
    which = np.zeros(n, dtype=np.int64)
    k = margin(transforms)
    q = query_view(queries, k)
    per = n * train.shape[0]
    for i, t in enumerate(transforms):
        sub = None if progress is None else (
            lambda d, _tot, i=i: progress(i * per + d, per * len(transforms)))
        v, j = one(q, reference_view(train, t, k), sub)
        better = v > best
        best[better], idx[better], which[better] = v[better], j[better], i
    return Nearest(best, idx, which)


def nearest_training(images: Any, train: Any, *, measure: str = "ssim",
                     transforms: tuple[Transform, ...] = (Transform(),),
                     device: str | torch.device = "cpu", progress: Progress | None = None,
                     dist: Any = None) -> Nearest:
    """Nearest training image of every image of ``images`` under ``measure`` ('ssim' or 'pearson'),
    searched over the views ``transforms`` of the training images. ``dist`` (a
    ``genbench.distributed.Dist``): the SSIM tiles, or the Pearson query blocks, are divided
    among the ranks and the results combined exactly on every rank."""
    x, t = _stack(images), _stack(train)
    if measure == "ssim":
        def one(q: torch.Tensor, ref: torch.Tensor, prog: Progress | None) -> tuple[np.ndarray, np.ndarray]:
            return nearest_ssim_cross(q, ref, device=device, progress=prog, dist=dist)
    elif measure == "pearson":
        def one(q: torch.Tensor, ref: torch.Tensor, prog: Progress | None) -> tuple[np.ndarray, np.ndarray]:
            if dist is None or not dist.enabled:
                return nearest_pearson(q, ref, device=device, progress=prog)
            rows = dist.shard(q.shape[0], align=512)  # nearest_pearson's query blocks, whole
            n = q.shape[0] * ref.shape[0]
            shown = None if prog is None or not dist.is_main else (
                lambda d, _t: prog(min(n, d * dist.world_size), n))
            v, j = nearest_pearson(q[rows.start:rows.stop], ref, device=device, progress=shown)
            return dist.gather_rows(v), dist.gather_rows(j)
    else:
        raise UsageError(f"nearest_training: measure must be 'ssim' or 'pearson', got {measure!r}")
    return _max_over_transforms(one, x, t, transforms, progress)


# ---------------------------------------------------------------------------------------------
# Calibration and confidence intervals.


def conformal_rank(n: int, quantile: float) -> int:
    """1-based rank k of the calibration threshold among n sorted values: ceil(q (n + 1)), at most n."""
    return max(1, min(n, math.ceil(quantile * (n + 1) - 1e-9)))


def threshold(calibration: np.ndarray, quantile: float) -> tuple[float, int, float]:
    """(tau, k, ideal_rate): the k-th smallest calibration value and the rate at which a new
    exchangeable value exceeds it, (n + 1 - k) / (n + 1)."""
    v = np.sort(np.asarray(calibration, dtype=np.float64))
    n = v.size
    k = conformal_rank(n, quantile)
    return float(v[k - 1]), k, (n + 1 - k) / (n + 1)


def flagged_fraction_replicates(real: np.ndarray, synth: np.ndarray, quantile: float, boot: Any
                                ) -> np.ndarray:
    """Bootstrap replicates of the flagged fraction (``boot``: a ``genbench.stats.Bootstrap``).

    Replicate i resamples the real values on the REAL stream and the synthetic values on the
    SYNTH stream (so two models scored against one REAL share the real resample: paired), and
    recomputes the threshold from the resampled real values.
    """
    from genbench.stats import REAL, SYNTH

    real = np.asarray(real, dtype=np.float64)
    synth = np.asarray(synth, dtype=np.float64)
    k = conformal_rank(real.size, quantile)
    out = np.empty(boot.replicates)
    for b0 in range(0, boot.replicates, 256):
        b1 = min(boot.replicates, b0 + 256)
        rr = real[boot.indices(real.size, REAL, b0, b1)]
        tau = np.partition(rr, k - 1, axis=1)[:, k - 1]
        ss = synth[boot.indices(synth.size, SYNTH, b0, b1)]
        out[b0:b1] = (ss > tau[:, None]).mean(axis=1)
    return out


@dataclass
class Calibrated:
    """One measure's verdict: threshold, flags, fraction and its exact binomial CI."""

    measure: str
    tau: float
    rank: int
    ideal_rate: float
    flagged: np.ndarray  # bool (N_synth,)
    fraction: float
    ci_binomial: tuple[float, float]
    median_real: float
    median_synth: float

    def summary(self) -> dict[str, Any]:
        ratio = self.median_synth / self.median_real if self.median_real != 0 else None
        return {
            "threshold": self.tau, "threshold_rank": self.rank, "ideal_rate": self.ideal_rate,
            "n_flagged": int(self.flagged.sum()), "fraction": self.fraction,
            "ci_binomial": list(self.ci_binomial),
            "median_real": self.median_real, "median_synth": self.median_synth,
            "median_ratio": ratio,
        }


def calibrate(measure: str, real: np.ndarray, synth: np.ndarray, *, quantile: float,
              ci_level: float = 0.95) -> Calibrated:
    """Flag synthetic similarities above the conformal ``quantile`` of the real ones."""
    from genbench.stats import binomial_ci

    tau, k, ideal = threshold(real, quantile)
    flagged = np.asarray(synth, dtype=np.float64) > tau
    n_flag = int(flagged.sum())
    return Calibrated(
        measure=measure, tau=tau, rank=k, ideal_rate=ideal, flagged=flagged,
        fraction=n_flag / flagged.size, ci_binomial=binomial_ci(n_flag, flagged.size, ci_level),
        median_real=float(np.median(real)), median_synth=float(np.median(synth)),
    )


# ---------------------------------------------------------------------------------------------
# Input checks.


def _image_hashes(x: torch.Tensor) -> list[bytes]:
    import hashlib

    arr = x.numpy().astype("<f4", copy=False)
    return [hashlib.sha256(a.tobytes()).digest() for a in arr]


def check_train(real: Any, train: Any) -> dict[str, Any]:
    """Refuse a TRAIN that makes the audit meaningless; returns facts worth recording.

    TRAIN must exist, hold images of REAL's size, and differ from REAL: with REAL's content equal
    to (or contained in) TRAIN, every held-out image has itself as nearest training image, the
    threshold is 1 and nothing could ever be flagged. ``genbench metrics`` calls this as soon as
    the sets are read, so that a bad --train is one error line, not an unavailable metric.
    """
    if train is None:
        raise UsageError("mem needs the training images: pass --train TRAIN (genbench run passes "
                         "its training split itself)")
    xr, xt = _stack(real), _stack(train)
    for label, x in (("--train", xt), ("REAL", xr)):
        if x.shape[0] < 1:
            raise InputError("mem: no images", label)
    if xt.shape[1:] != xr.shape[1:]:
        raise InputError(f"training images are {xt.shape[1]}x{xt.shape[2]} but REAL images are "
                         f"{xr.shape[1]}x{xr.shape[2]}; mem compares pixels, so sizes must match "
                         "(use --resize)", "--train")
    h_real, h_train = _image_hashes(xr), set(_image_hashes(xt))
    in_train = sum(h in h_train for h in h_real)
    if in_train == len(h_real):
        what = "the same images as" if len(h_train) == len(set(h_real)) else "contained in"
        raise InputError(f"REAL is {what} TRAIN (identical pixels): the held-out calibration would "
                         "measure training images against themselves; pass a held-out set that is "
                         "not in the training set", "--train")
    return {"n_real_in_train": in_train}


def check_sets(real: Any, synth: Any, train: Any) -> dict[str, Any]:
    """``check_train`` plus SYNTH: at least one image, of REAL's size."""
    facts = check_train(real, train)
    xr, xs = _stack(real), _stack(synth)
    if xs.shape[0] < 1:
        raise InputError("mem: no images", "SYNTH")
    if xs.shape[1:] != xr.shape[1:]:
        raise InputError(f"synthetic images are {xs.shape[1]}x{xs.shape[2]} but REAL images are "
                         f"{xr.shape[1]}x{xr.shape[2]}", "SYNTH")
    return facts


# ---------------------------------------------------------------------------------------------
# The metric.


def _phases(progress: Progress | None, sizes: list[int]) -> Iterator[Progress | None]:
    """Split one ``progress(done, total)`` over consecutive phases of the given sizes."""
    total = sum(sizes)
    offset = 0
    for size in sizes:
        if progress is None:
            yield None
        else:
            yield (lambda d, _t, o=offset: progress(o + d, total))
        offset += size


def _set_ci(result: MetricResult, ci: tuple[float, float] | None, method: str) -> None:
    if hasattr(result, "ci_method"):
        result.ci = ci
        result.ci_method = method
    else:  # until MetricResult has the fields (as genbench.stats.attach_ci does)
        result.params["ci"] = None if ci is None else [ci[0], ci[1]]
    result.params["ci_method"] = method


def audit(near_real: dict[str, Nearest], near_synth: dict[str, Nearest], *, synth: Any, train: Any,
          transforms: tuple[Transform, ...], quantile: float = DEFAULT_QUANTILE, boot: Any = None,
          ci_level: float = 0.95, top_k: int = TOP_PAIRS) -> MetricResult:
    """The verdict from nearest-training similarities already computed (``nearest_training``).

    ``near_real``/``near_synth``: measure -> Nearest, "ssim" required (it decides), "pearson" and
    "inception" optional. ``boot``: a ``genbench.stats.Bootstrap``; when it is given and enabled
    the CI is its bootstrap interval (replicates kept for paired model comparisons), otherwise
    the exact binomial interval. ``synth``/``train``: the images, for the closest pairs' pixels.
    """
    if not 0.5 <= quantile < 1.0:
        raise UsageError(f"--mem-quantile must be in [0.5, 1), got {quantile}")
    if "ssim" not in near_real or "ssim" not in near_synth:
        raise ValueError("audit: the ssim measure is required")
    xs, xt = _stack(synth), _stack(train)
    if boot is not None and boot.enabled:
        ci_level = boot.level
    verdicts = {m: calibrate(m, near_real[m].value, near_synth[m].value, quantile=quantile,
                             ci_level=ci_level)
                for m in MEASURES if m in near_real and m in near_synth}
    main, ssim_s = verdicts["ssim"], near_synth["ssim"]
    pear_s = near_synth.get("pearson")
    flagged = np.flatnonzero(main.flagged)
    flagged = flagged[np.argsort(-ssim_s.value[flagged], kind="stable")]
    top = np.argsort(-ssim_s.value, kind="stable")[:top_k]

    def pairs(idx: np.ndarray) -> dict[str, list]:
        out = {
            "synth_index": [int(i) for i in idx],
            "train_index": [int(ssim_s.index[i]) for i in idx],
            "transform": [transforms[int(ssim_s.transform[i])].name for i in idx],
            "ssim": [float(ssim_s.value[i]) for i in idx],
        }
        if pear_s is not None:
            out["pearson"] = [float(pear_s.value[i]) for i in idx]
        return out

    by_measure = {m: v.summary() for m, v in verdicts.items()}
    if "inception" in by_measure:
        by_measure["inception"]["note"] = ("similarity = minus the pool3 Euclidean distance "
                                           "(threshold and medians likewise)")
    params: dict[str, Any] = {
        "measure": "ssim",
        "quantile": float(quantile),
        "threshold": main.tau,
        "threshold_rank": main.rank,
        "n_calibration": int(near_real["ssim"].value.size),
        "n_train": int(xt.shape[0]),
        "ideal_rate": main.ideal_rate,
        "n_flagged": int(flagged.size),
        "median_ratio": by_measure["ssim"]["median_ratio"],
        "ci_binomial": list(main.ci_binomial),
        "transforms": [t.name for t in transforms],
        "compared_crop": margin(transforms),
        "by_measure": by_measure,
        "flagged": pairs(flagged),
        "top_pairs": pairs(top),
        "ssim": SSIMSettings().as_dict(),
    }
    if pear_s is not None:
        params["pearson"] = "pixel Pearson correlation of the flattened images; constant images score 0"
    top_train = [display_view(xt[int(ssim_s.index[i])], transforms[int(ssim_s.transform[i])]).numpy()
                 for i in top]
    extra: dict[str, Any] = {
        "nearest_train_ssim_real": near_real["ssim"].value,
        "nearest_train_ssim_synth": ssim_s.value,
        "nearest_train_index_synth": ssim_s.index,
        "top_pairs_synth": xs[torch.as_tensor(top, dtype=torch.long)].numpy(),
        "top_pairs_train": np.stack(top_train) if top_train else np.zeros((0, *xs.shape[1:]), np.float32),
    }
    json_extra = ["nearest_train_ssim_real", "nearest_train_ssim_synth"]
    if pear_s is not None:
        extra["nearest_train_pearson_real"] = near_real["pearson"].value
        extra["nearest_train_pearson_synth"] = pear_s.value
        json_extra += ["nearest_train_pearson_real", "nearest_train_pearson_synth"]
    result = MetricResult(name="mem", value=main.fraction, params=params,
                          n_real=params["n_calibration"], n_synth=int(ssim_s.value.size),
                          extra=extra, json_extra=tuple(json_extra))
    if boot is not None and boot.enabled:
        from genbench.stats import attach_ci

        reps = flagged_fraction_replicates(near_real["ssim"].value, ssim_s.value, quantile, boot)
        attach_ci(result, reps, boot, bounds=(0.0, 1.0), method=CI_BOOTSTRAP)
        ci = result.ci if hasattr(result, "ci_method") else result.params.get("ci")
        result.params["ci_bootstrap"] = None if ci is None else [float(ci[0]), float(ci[1])]
        if ci is not None:
            # A bootstrap of a proportion collapses at 0 and 1 (every resample of a set that is
            # all copies is all copies); the exact interval does not. Report the envelope.
            ci = (min(ci[0], main.ci_binomial[0]), max(ci[1], main.ci_binomial[1]))
        _set_ci(result, ci, CI_ENVELOPE)
    else:
        _set_ci(result, main.ci_binomial, CI_BINOMIAL)
        result.params["ci_level"] = float(ci_level)
    return result


def compute_mem(
    real: Any,
    synth: Any,
    train: Any,
    *,
    quantile: float = DEFAULT_QUANTILE,
    transforms: str | None = "none",
    boot: Any = "default",
    seed: int = 0,
    device: str | torch.device = "cpu",
    pearson: bool = True,
    inception: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    top_k: int = TOP_PAIRS,
    progress: Progress | None = None,
) -> MetricResult:
    """The memorisation audit of SYNTH against TRAIN, calibrated on REAL (see the module docstring).

    ``real``, ``synth``, ``train``: canonical image sets (N, 1, H, W) or ImageSets of one size.
    ``boot``: a ``genbench.stats.Bootstrap``; "default" = ``Bootstrap(seed=seed)``; None = the
    exact binomial CI. ``inception``: optional pool3 features ``(real, synth, train)``.
    ``progress(done, total)`` counts image pairs over all measures and both sets.
    """
    if not 0.5 <= quantile < 1.0:
        raise UsageError(f"--mem-quantile must be in [0.5, 1), got {quantile}")
    if isinstance(boot, str):
        from genbench.stats import Bootstrap

        boot = Bootstrap(seed=seed)
    t0 = time.perf_counter()
    facts = check_sets(real, synth, train)
    views = parse_transforms(transforms)
    xr, xs, xt = _stack(real), _stack(synth), _stack(train)
    k = margin(views)
    if min(xr.shape[1:]) - 2 * k < WIN:
        raise UsageError(f"--mem-transforms: shifts of {k} px leave a {xr.shape[1] - 2 * k}x"
                         f"{xr.shape[2] - 2 * k} central crop; SSIM needs at least {WIN}x{WIN}")
    nr, ns, nt = xr.shape[0], xs.shape[0], xt.shape[0]
    measures = ("ssim", "pearson") if pearson else ("ssim",)
    phase = _phases(progress, [nr * nt * len(views), ns * nt * len(views)] * len(measures))
    near_r: dict[str, Nearest] = {}
    near_s: dict[str, Nearest] = {}
    for measure in measures:
        near_r[measure] = nearest_training(xr, xt, measure=measure, transforms=views, device=device,
                                           progress=next(phase))
        near_s[measure] = nearest_training(xs, xt, measure=measure, transforms=views, device=device,
                                           progress=next(phase))
    if inception is not None:
        fr, fs, ft = (np.asarray(f) for f in inception)
        if not (len(fr) == nr and len(fs) == ns and len(ft) == nt):
            raise InputError("mem: Inception features do not match the image sets")
        near_r["inception"] = inception_nearest(fr, ft)
        near_s["inception"] = inception_nearest(fs, ft)
    result = audit(near_r, near_s, synth=xs, train=xt, transforms=views, quantile=quantile,
                   boot=boot, top_k=top_k)
    result.params.update(facts)
    result.elapsed_s = time.perf_counter() - t0
    return result


def inception_nearest(features: np.ndarray, train_features: np.ndarray) -> Nearest:
    """Nearest training image in Inception pool3 space, as a similarity (minus the distance)."""
    dist, idx = nearest_feature_distance(features, train_features)
    return Nearest(-dist, idx, np.zeros(len(idx), dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# Registry entry point.


def _inception_nearest_sets(ctx: Any, train: Any) -> tuple[Nearest, Nearest, str] | str:
    """Nearest training image in pool3 space for REAL and SYNTH, or why not (weights absent)."""
    from genbench.errors import WeightsUnavailableError
    from genbench.metrics.inception import InceptionFeatureExtractor

    opts = ctx.options
    key = ("inception-extractor", str(opts.inception_weights), ctx.device)
    try:
        if key not in ctx.shared:
            ctx.shared[key] = InceptionFeatureExtractor(opts.inception_weights, device=ctx.device,
                                                        batch_size=opts.batch_size)
    except WeightsUnavailableError:
        return "Inception-v3 weights absent: pool3 distance not computed (pixel measures only)"
    ext = ctx.shared[key]

    def features(which: str) -> np.ndarray:
        def compute(images: Any) -> Any:
            with ctx.step(f"Inception features ({which})", len(images)) as step:
                feats, _hit = ext.features(images.images, cache_dir=opts.cache_dir,
                                           content_sha256=ctx.sha256(images), progress=step,
                                           use_cache=opts.use_cache, dist=ctx.dist)
            return feats

        return ctx.per_image(("inception", ext.weights_sha256), which, compute).pool3

    # Features are memoised per set; the nearest search in 2048-d is one matrix product (cheap).
    ft = features("train")
    return (inception_nearest(features("real"), ft), inception_nearest(features("synth"), ft),
            ext.weights_sha256)


def compute_mem_metric(ctx: Any) -> MetricResult:
    """Registry entry: ``mem`` of ctx.synth against ctx.train, calibrated on ctx.real.

    Nearest-training similarities are per-image quantities memoised per underlying set, so the
    real-vs-real floor (rows of REAL) and later models scored against the same REAL and TRAIN
    reuse REAL's; only each synthetic set is searched anew.
    """
    t0 = time.perf_counter()
    opts = ctx.options
    train = ctx.train
    if train is None:
        raise UsageError("mem needs the training images: pass --train TRAIN to genbench metrics "
                         "(genbench run passes its training split itself)")
    quantile = float(opts.mem_quantile)
    if not 0.5 <= quantile < 1.0:
        raise UsageError(f"--mem-quantile must be in [0.5, 1), got {quantile}")
    views = parse_transforms(opts.mem_transforms)
    facts = check_sets(ctx.real, ctx.synth, train)
    xt = _stack(train)
    k = margin(views)
    if min(xt.shape[1:]) - 2 * k < WIN:
        raise UsageError(f"--mem-transforms: shifts of {k} px leave a {xt.shape[1] - 2 * k}x"
                         f"{xt.shape[2] - 2 * k} central crop; SSIM needs at least {WIN}x{WIN}")
    sha_train = ctx.sha256(train)
    nr, ns, nt = len(ctx.real), len(ctx.synth), len(train)
    measures = ("ssim", "pearson")
    sizes = {"real": nr, "synth": ns}
    total = (nr + ns) * nt * len(views) * len(measures)
    near: dict[str, dict[str, Nearest]] = {"real": {}, "synth": {}}
    with ctx.step("Mem", total) as step:
        offset = 0
        for measure in measures:
            for which in ("real", "synth"):
                def search(images: Any, measure: str = measure, off: int = offset) -> Nearest:
                    return nearest_training(images.images, xt, measure=measure, transforms=views,
                                            device=ctx.device, dist=ctx.dist,
                                            progress=lambda d, _t: step.absolute(off + d, total))

                kind = ("mem-nearest", measure, sha_train, tuple(t.name for t in views))
                near[which][measure] = ctx.per_image(kind, which, search)
                offset += sizes[which] * nt * len(views)
                step.absolute(offset, total)
    inc = _inception_nearest_sets(ctx, train)
    if isinstance(inc, tuple):
        near["real"]["inception"], near["synth"]["inception"], inc_sha = inc
        inception_note: dict[str, Any] = {"inception_weights_sha256": inc_sha}
    else:
        inception_note = {"inception": inc}
    res = audit(near["real"], near["synth"], synth=ctx.synth, train=train, transforms=views,
                quantile=quantile, boot=ctx.boot, ci_level=float(opts.ci))
    res.params.update(facts)
    res.params.update(inception_note)
    res.params["train_sha256"] = sha_train
    res.elapsed_s = time.perf_counter() - t0
    return res


def save_top_pairs(result: MetricResult, path: Any) -> Any:
    """Write the closest synthetic-training pairs of a ``mem`` result (the report figure's input)
    to ``path`` (npz, atomically); returns the path, or None when the result has no pairs."""
    import io

    from genbench.io.atomic import atomic_write_bytes

    extra = result.extra or {}
    if result.status != "ok" or "top_pairs_synth" not in extra:
        return None
    top = result.params["top_pairs"]
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        synth=np.asarray(extra["top_pairs_synth"], dtype=np.float32),
        train=np.asarray(extra["top_pairs_train"], dtype=np.float32),
        ssim=np.asarray(top["ssim"], dtype=np.float64),
        synth_index=np.asarray(top["synth_index"], dtype=np.int64),
        train_index=np.asarray(top["train_index"], dtype=np.int64),
        threshold=np.asarray(result.params["threshold"], dtype=np.float64),
    )
    return atomic_write_bytes(path, buf.getvalue())
