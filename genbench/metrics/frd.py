"""Fréchet Radiomics Distance (FRD): a Fréchet distance between Gaussians fitted to radiomic
features, computed with the ``frd-score`` package on ``pyradiomics-bhklab``. No learned weights.

What is computed, per version (``frd-score`` 1.0's definitions; Konz, Osuala et al., Medical
Image Analysis 2026 for v1, Osuala et al. 2024 for v0):

- **Features.** Every image is quantised to 8 bits exactly as genbench writes a PNG
  (``floor((x + 1) * 127.5 + 0.5)``) and handed to ``frd_score.frd.process_image_mask_pair``
  as a PNG file, so the features are the ones the ``frd-score`` command line computes on a
  folder of those PNGs. The mask is the whole image (v1: minus one corner pixel, the package's
  pyradiomics work-around) unless per-image masks are given. v1 extracts with the package's
  2-D YAML (Original + LoG + Wavelet image types, resampled to 2 mm with B-splines, bin width
  5); for 2-D inputs pyradiomics skips the LoG images (its LoG filter needs >= 4 voxels along
  every axis and a 2-D slice has one), so v1 yields 385 radiomic features plus 13 numeric
  pyradiomics diagnostics that the package keeps on purpose, 398 columns; v0 yields 102.
- **Statistics.** v1: images with a NaN feature are dropped, features are cast to float32,
  z-scored with the *real* set's mean and standard deviation (the paper's D1-reference
  normalisation), and columns that are NaN/Inf in either set afterwards are dropped. v0:
  min-max normalisation to [0, 7.4567] with the joint (real and synthetic) range, NaN -> centre.
  The package's own normalisation functions do this work.
- **Distance.** ``d² = |mu_r - mu_s|² + Tr(S_r + S_s - 2 (S_r S_s)^(1/2))`` in float64
  (genbench's Fréchet distance, the same number as the package's ``scipy`` one). v0 reports
  ``d²``; v1 reports ``ln(d²)``: the package's (and the published numbers') convention. The
  paper's Eq. 3 writes ``ln(d)``, half of that value; both are in ``params``.
- **Identical statistics.** When the two sets' normalised feature statistics coincide (``d²`` at
  round-off level of the covariance traces), ``d² = 0``: the package returns ``ln(0) = -inf``
  for v1; genbench reports 0 and says so in ``params["identical_statistics"]``. (On the v1 log
  scale a value below 0 means ``0 < d² < 1``, which real sets of a few hundred images do not
  reach: their sampling noise alone keeps ``d²`` far above 1.)

Radiomic features are cached per image content (8-bit pixels and mask) and extraction
settings under ``<cache root>/radiomics``, so a changed image costs one extraction, and are
computed with a process pool when many are missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genbench.errors import GenbenchError, UsageError

__all__ = [
    "FRD_VERSIONS",
    "FRDStatistic",
    "RadiomicFeatures",
    "extraction_settings",
    "frd_from_features",
    "frd_statistic",
    "radiomic_features",
    "radiomics_cache_dir",
]

FRD_VERSIONS: tuple[str, ...] = ("v1", "v0")
# Bumped whenever the features this module caches could change for the same package versions.
IMPL_VERSION = "genbench-frd-1"
# Below this many uncached images a process pool costs more (worker start-up imports SimpleITK,
# OpenCV and pyradiomics: ~3 s) than it saves.
POOL_MIN_IMAGES = 24

ProgressFn = Callable[[int, int], None]


class RadiomicsUnavailableError(GenbenchError):
    """frd-score or pyradiomics cannot be imported; the message says how to install them."""


def _packages() -> tuple[Any, str, str]:
    """(frd_score.frd module, frd-score version, pyradiomics version), or a clear error."""
    try:
        import frd_score
        import radiomics
        from frd_score import frd as frd_mod
    except ImportError as exc:
        raise RadiomicsUnavailableError(
            f"FRD needs the packages frd-score and pyradiomics-bhklab ({exc}); install them with "
            "`pip install frd-score pyradiomics-bhklab` (pyradiomics-bhklab builds from source)") from None
    return frd_mod, str(frd_score.__version__), str(radiomics.__version__)


def _quiet_radiomics() -> None:
    # pyradiomics logs a warning per image for the skipped LoG filter and per extractor for GLCM
    # settings; the package itself silences it the same way in compute_frd.
    import radiomics

    radiomics.setVerbosity(60)
    logging.getLogger("radiomics").setLevel(logging.ERROR)


def check_version(version: str) -> str:
    v = str(version).lower()
    if v not in FRD_VERSIONS:
        raise UsageError(f"--frd-version must be one of {', '.join(FRD_VERSIONS)}, got {version!r}")
    return v


def extraction_settings(version: str = "v1") -> dict[str, Any]:
    """Everything besides pixels and masks that determines the features (part of the cache key)."""
    version = check_version(version)
    _, frd_version, rad_version = _packages()
    return {"impl": IMPL_VERSION, "frd_version": version, "frd_score": frd_version,
            "pyradiomics": rad_version,
            "input": "8-bit PNG, uint8 = floor((clamp(x,-1,1)+1)*127.5+0.5), spacing 1",
            "extractor": "frd_score.frd.get_feature_extractor(frd_version, image_dim=2)",
            "per_image": "frd_score.frd.process_image_mask_pair"}


# ---------------------------------------------------------------------------------------------
# Per-image extraction (runs in worker processes or in-process).

_EXTRACTOR: dict[str, Any] = {}


def _extractor(version: str) -> Any:
    if version not in _EXTRACTOR:
        frd_mod, _, _ = _packages()
        _quiet_radiomics()
        _EXTRACTOR[version] = frd_mod.get_feature_extractor(frd_version=version, image_dim=2)
    return _EXTRACTOR[version]


def _worker_init(version: str) -> None:
    # One thread per worker: the pool supplies the parallelism, and ITK's own thread pool on top
    # of it oversubscribes the cores.
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    _extractor(version)


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _extract_one(version: str, image: np.ndarray, mask: np.ndarray | None,
                 ) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Features of one uint8 (H, W) image: the package's per-image function on a PNG of it.

    Returns (None, ()) when the package skips the image (a mask with <= 1 voxel).
    """
    frd_mod, _, _ = _packages()
    ext = _extractor(version)
    with tempfile.TemporaryDirectory(prefix="genbench-frd-") as tmp:
        img_path = Path(tmp) / "image.png"
        img_path.write_bytes(_png_bytes(image))
        mask_path = None
        if mask is not None:
            mask_path = Path(tmp) / "mask.png"
            mask_path.write_bytes(_png_bytes(mask.astype(np.uint8)))
        out = frd_mod.process_image_mask_pair((str(img_path), None if mask_path is None else str(mask_path)),
                                              feature_extractor=ext, frd_version=version)
    if out is None:
        return None, ()
    values, named, _n = out
    return np.asarray(values, dtype=np.float64), tuple(named.keys())


def _extract_task(args: tuple[int, str, np.ndarray, np.ndarray | None]
                  ) -> tuple[int, np.ndarray | None, tuple[str, ...]]:
    i, version, image, mask = args
    values, names = _extract_one(version, image, mask)
    return i, values, names


# ---------------------------------------------------------------------------------------------
# The per-image cache.


def radiomics_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache_dir>/radiomics`` when a cache folder is given, else the ``radiomics`` folder of
    genbench's one cache root (``$GENBENCH_CACHE/radiomics``)."""
    if cache_dir is not None:
        return Path(cache_dir) / "radiomics"
    try:
        from genbench.cache import cache_dir as kind_dir
    except ImportError:  # before the cache root module: beside the Inception features
        from genbench.metrics.inception import default_cache_dir

        return default_cache_dir().parent / "radiomics"
    return kind_dir("radiomics")


def _image_key(image: np.ndarray, mask: np.ndarray | None) -> str:
    h = hashlib.sha256()
    h.update(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    if mask is None:
        h.update(b"whole-image")
    else:
        h.update(np.ascontiguousarray(mask, dtype=bool).tobytes())
    return h.hexdigest()


class _DiskCache:
    """One ``.npy`` per image under ``<root>/<settings hash>/<k[:2]>/<k>.npy``; the feature names
    once in ``names.json``. An image the package skipped is stored as an empty array."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        blob = json.dumps(settings, sort_keys=True).encode()
        self.folder = root / hashlib.sha256(blob).hexdigest()[:20]
        self.settings = settings
        self._names: tuple[str, ...] | None = None

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def names(self) -> tuple[str, ...] | None:
        if self._names is None:
            try:
                self._names = tuple(json.loads((self.folder / "names.json").read_text())["names"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
        return self._names

    def get(self, key: str, n_features: int | None) -> np.ndarray | None:
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception:  # noqa: BLE001 - a corrupt entry is recomputed (and rewritten), never trusted
            return None
        if arr.ndim != 1 or (arr.size and n_features is not None and arr.size != n_features):
            return None
        return arr.astype(np.float64, copy=False)

    def put(self, key: str, values: np.ndarray | None, names: tuple[str, ...]) -> None:
        from genbench.io.atomic import atomic_write_bytes, atomic_write_text

        try:
            if names and self.names() is None:
                atomic_write_text(self.folder / "names.json",
                                  json.dumps({"settings": self.settings, "names": list(names)}, indent=1))
                self._names = names
            buf = io.BytesIO()
            np.save(buf, np.zeros(0) if values is None else np.asarray(values, np.float64))
            atomic_write_bytes(self._path(key), buf.getvalue())
        except OSError:
            # A read-only or full cache folder must not fail an evaluation; it only costs time later.
            pass


# ---------------------------------------------------------------------------------------------
# Features of a set.


@dataclass
class RadiomicFeatures:
    """Per-image radiomic features, rows in input order; ``kept`` says which images have a row
    (the package skips images whose mask has <= 1 voxel)."""

    values: np.ndarray  # (n_kept, F) float64
    names: tuple[str, ...]
    kept: np.ndarray  # (N,) bool
    n_extracted: int = 0  # images computed now (the rest came from the cache)
    elapsed_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_features(self) -> int:
        return len(self.names)

    def subset(self, rows: np.ndarray | list[int]) -> RadiomicFeatures:
        """The features of images ``rows`` (indices into the original set)."""
        rows = np.asarray(rows, dtype=np.int64)
        position = np.cumsum(self.kept) - 1  # row of each kept image in ``values``
        kept = self.kept[rows]
        return RadiomicFeatures(values=self.values[position[rows[kept]]], names=self.names, kept=kept,
                                n_extracted=0, elapsed_s=0.0, settings=self.settings)


def to_uint8_images(images: Any) -> np.ndarray:
    """Canonical (N, 1, H, W) float in [-1, 1] (tensor or array) or uint8 (N, [1,] H, W) -> uint8 (N, H, W)."""
    import torch

    from genbench.imageset import quantize_uint8

    x = images.images if hasattr(images, "images") else images
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if x.dtype != torch.uint8:
        x = quantize_uint8(x.float())
    arr = x.cpu().numpy()
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise UsageError(f"radiomic features need single-channel images, got shape {arr.shape}")
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise UsageError(f"radiomic features need (N, 1, H, W) images, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def radiomic_features(images: Any, *, masks: np.ndarray | None = None, version: str = "v1",
                      n_jobs: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                      use_cache: bool = True, memo: dict[str, Any] | None = None,
                      progress: ProgressFn | None = None, dist: Any = None) -> RadiomicFeatures:
    """Radiomic features of every image, from the cache where possible.

    ``images``: an ImageSet, canonical float (N, 1, H, W), or uint8 (N, H, W). ``masks``: None
    (whole image) or bool (N, H, W). ``memo``: an in-memory dict shared between calls (per-image
    key -> features), consulted before the disk. ``progress(done, total)`` after each image.
    ``dist`` (a ``genbench.distributed.Dist``): each rank extracts a contiguous share of the images
    (caching its own per-image entries) and every rank gets all of them in input order.
    """
    if dist is not None and dist.enabled:
        return _radiomic_features_shared(images, dist, masks=masks, version=version, n_jobs=n_jobs,
                                         cache_dir=cache_dir, use_cache=use_cache, memo=memo,
                                         progress=progress)
    t0 = time.perf_counter()
    version = check_version(version)
    u8 = to_uint8_images(images)
    n = len(u8)
    if masks is not None:
        masks = np.asarray(masks).astype(bool)
        if masks.shape != u8.shape:
            raise UsageError(f"FRD masks must match the images' shape {u8.shape}, got {masks.shape}")
    settings = extraction_settings(version)
    disk = _DiskCache(radiomics_cache_dir(cache_dir), settings) if use_cache else None
    memo = memo if memo is not None else {}
    names = disk.names() if disk is not None else None
    if names is None:
        names = memo.get(f"names:{version}")
    keys = [f"{version}:" + _image_key(u8[i], None if masks is None else masks[i]) for i in range(n)]
    rows: list[np.ndarray | None] = [None] * n
    found = np.zeros(n, dtype=bool)
    for i, k in enumerate(keys):
        hit = memo.get(k)
        if hit is None and disk is not None:
            hit = disk.get(k.split(":", 1)[1], None if names is None else len(names))
            if hit is not None:
                memo[k] = hit
        if hit is not None:
            rows[i], found[i] = hit, True
    done = int(found.sum())
    if progress is not None:
        progress(done, n)
    missing = np.flatnonzero(~found)

    def store(i: int, values: np.ndarray | None, got_names: tuple[str, ...]) -> None:
        nonlocal names, done
        if values is not None:
            if names is None:
                names = got_names
            elif got_names != names:
                raise RuntimeError("pyradiomics returned a different feature list for one image "
                                   f"({len(got_names)} vs {len(names)} features)")
        arr = np.zeros(0) if values is None else values
        rows[i] = arr
        memo[keys[i]] = arr
        if disk is not None:
            disk.put(keys[i].split(":", 1)[1], values, got_names)
        done += 1
        if progress is not None:
            progress(done, n)

    jobs = n_jobs if n_jobs is not None else _default_jobs()
    tasks = [(int(i), version, u8[i], None if masks is None else masks[i]) for i in missing]
    if len(tasks) >= POOL_MIN_IMAGES and jobs > 1:
        import multiprocessing as mp

        # fork where available (as frd-score's own pool does): workers start at once with the
        # radiomics stack already imported, and the caller's __main__ is not re-run (spawn and
        # forkserver re-import it, which breaks unguarded scripts). The workers run SimpleITK,
        # pyradiomics and NumPy only, never torch, so its inherited OpenMP pool stays unused.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx,
                                 initializer=_worker_init, initargs=(version,)) as pool:
            futures = [pool.submit(_extract_task, t) for t in tasks]
            for fut in as_completed(futures):
                i, values, got = fut.result()
                store(i, values, got)
    else:
        for t in tasks:
            i, values, got = _extract_task(t)
            store(i, values, got)
    if names is None:
        raise GenbenchError("FRD: pyradiomics extracted no features from any image "
                            "(every mask had at most one voxel)")
    memo[f"names:{version}"] = names
    kept = np.array([r is not None and r.size > 0 for r in rows], dtype=bool)
    values = (np.stack([r for r, k in zip(rows, kept) if k]) if kept.any()
              else np.zeros((0, len(names))))
    return RadiomicFeatures(values=values, names=tuple(names), kept=kept, n_extracted=len(tasks),
                            elapsed_s=time.perf_counter() - t0, settings=settings)


def _radiomic_features_shared(images: Any, dist: Any, *, masks: np.ndarray | None, n_jobs: int | None,
                              progress: ProgressFn | None, **kwargs: Any) -> RadiomicFeatures:
    t0 = time.perf_counter()
    u8 = to_uint8_images(images)
    n = len(u8)
    lo, hi = dist.bounds(n)[dist.rank]
    if n_jobs is None:  # the machine's cores are shared by its ranks
        n_jobs = max(1, _default_jobs() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    shown = None
    if progress is not None and dist.is_main:
        shown = lambda done, _total: progress(min(n, done * dist.world_size), n)
    try:
        own = radiomic_features(u8[lo:hi], masks=None if masks is None else masks[lo:hi], n_jobs=n_jobs,
                                progress=shown, **kwargs)
        part: tuple[Any, ...] = (own.values, own.names, own.kept, own.n_extracted, None)
    except GenbenchError as exc:  # e.g. every mask of this share empty: another share may have rows
        part = (None, None, np.zeros(hi - lo, dtype=bool), hi - lo, str(exc))
    parts = dist.gather_objects(part)
    names = next((p[1] for p in parts if p[1] is not None), None)
    if names is None:
        raise GenbenchError(parts[0][4])
    if any(p[1] is not None and tuple(p[1]) != tuple(names) for p in parts):
        raise GenbenchError("FRD: the ranks' radiomic feature lists differ (different package versions?)")
    values = [p[0] for p in parts if p[0] is not None and len(p[0])]
    return RadiomicFeatures(values=np.concatenate(values) if values else np.zeros((0, len(names))),
                            names=tuple(names), kept=np.concatenate([p[2] for p in parts]),
                            n_extracted=sum(p[3] for p in parts), elapsed_s=time.perf_counter() - t0,
                            settings=extraction_settings(kwargs.get("version", "v1")))


# ---------------------------------------------------------------------------------------------
# Statistics and distance.


@dataclass
class FRDStatistic:
    value: float  # v1: ln(d²) (0 for identical statistics); v0: d²
    d2: float
    version: str
    n_features: int  # columns that entered the distance
    n_real: int  # images that entered the distance
    n_synth: int
    identical: bool = False
    dropped_columns: int = 0
    dropped_rows: tuple[int, int] = (0, 0)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "frd_version": self.version,
            "frechet_d2": self.d2,
            "n_features": self.n_features,
            "identical_statistics": self.identical,
        }
        if self.version == "v1":
            out["log_transform"] = ("ln(d²), frd-score's convention (the paper's Eq. 3 writes "
                                    "ln(d), half of this value)")
            out["paper_eq3_ln_d"] = 0.5 * math.log(self.d2) if self.d2 > 0 else None
            out["normalisation"] = "z-score with the real set's mean/std (D1 reference), float32"
            out["dropped_feature_columns"] = self.dropped_columns
            out["dropped_images_nan"] = {"real": self.dropped_rows[0], "synth": self.dropped_rows[1]}
        else:
            out["log_transform"] = "none (d²)"
            out["normalisation"] = "min-max to [0, 7.4567] over both sets jointly"
        if self.identical:
            out["identical_note"] = ("the two sets' feature statistics coincide: d² = 0 (frd-score "
                                     "returns -inf for v1); reported as 0")
        return out


def _zscore_v1(f: np.ndarray, base: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """frd-score's v1 z-scoring (``z_score_normalize(..., replace_nan=False,
    handle_std_zero=False)``), vectorised: the same float32 operations column by column, so the
    result is bitwise the package's (checked in the tests); a NaN mean/std leaves a column raw."""
    mean = np.nanmean(base, axis=0)
    std = np.nanstd(base, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ((f - mean) / std) * (float(hi) - float(lo)) + float(lo)
    raw = np.isnan(mean) | np.isnan(std)
    if raw.any():
        z[:, raw] = f[:, raw]
    return z.astype(f.dtype, copy=False)


def _minmax_v0(f: np.ndarray, base: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """frd-score's v0 min-max scaling (``min_max_normalize``, NaN -> centre), vectorised."""
    mn = np.nanmin(base, axis=0)
    mx = np.nanmax(base, axis=0)
    span = mx - mn
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ((f - mn) / span) * (float(hi) - float(lo)) + float(lo)
    z[:, span == 0] = 0.5 * (float(hi) - float(lo)) + float(lo)
    raw = np.isnan(mn) | np.isnan(mx)
    if raw.any():
        z[:, raw] = f[:, raw]
    z[np.isnan(z)] = (lo + hi) / 2
    return z


def _normalise(real: np.ndarray, synth: np.ndarray, version: str
               ) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int]]:
    """The package's normalisation of both sets (its defaults; vectorised transcriptions of its
    functions, bitwise equal to them)."""
    frd_mod, _, _ = _packages()
    if version == "v1":
        dropped = []
        sets = []
        for f in (real, synth):
            bad = np.isnan(f).any(axis=1)
            dropped.append(int(bad.sum()))
            sets.append(f[~bad].astype(np.float32))
        r, s = sets
        lo, hi = frd_mod.V1_DEFAULT_NORM_RANGE
        zr, zs = _zscore_v1(r, r, lo, hi), _zscore_v1(s, r, lo, hi)
        bad_cols = ~(np.isfinite(zr).all(axis=0) & np.isfinite(zs).all(axis=0))
        return zr[:, ~bad_cols], zs[:, ~bad_cols], int(bad_cols.sum()), (dropped[0], dropped[1])
    lo, hi = frd_mod.V0_DEFAULT_NORM_RANGE
    base = np.concatenate([real, synth], axis=0)
    return _minmax_v0(real, base, lo, hi), _minmax_v0(synth, base, lo, hi), 0, (0, 0)


# A d² below this fraction of the covariance traces is round-off: the statistics are identical.
IDENTICAL_RTOL = 1e-10


def frd_statistic(real: np.ndarray, synth: np.ndarray, version: str = "v1") -> FRDStatistic:
    """FRD between per-image feature matrices (rows = images, real first: it is the reference)."""
    from genbench.metrics.fidelity import MetricInputError, frechet_distance

    version = check_version(version)
    zr, zs, dropped_cols, dropped_rows = _normalise(np.asarray(real, np.float64),
                                                    np.asarray(synth, np.float64), version)
    if len(zr) < 2 or len(zs) < 2:
        raise MetricInputError(f"FRD needs at least 2 images with features per set, got {len(zr)} "
                               f"real and {len(zs)} synthetic")
    if zr.shape[1] == 0:
        raise MetricInputError("FRD: no radiomic feature is finite after normalisation")
    d2 = frechet_distance(zr, zs)
    a, b = zr.astype(np.float64), zs.astype(np.float64)
    scale = float(a.var(axis=0, ddof=1).sum() + b.var(axis=0, ddof=1).sum())
    identical = d2 <= IDENTICAL_RTOL * max(scale, 1e-300)
    if identical:
        d2 = 0.0
    if version == "v1":
        value = 0.0 if identical else math.log(d2)
    else:
        value = d2
    return FRDStatistic(value=float(value), d2=float(d2), version=version, n_features=int(zr.shape[1]),
                        n_real=len(zr), n_synth=len(zs), identical=bool(identical),
                        dropped_columns=dropped_cols, dropped_rows=dropped_rows)


def frd_from_features(real: RadiomicFeatures, synth: RadiomicFeatures, version: str = "v1") -> FRDStatistic:
    if real.names != synth.names:
        raise GenbenchError("FRD: the two sets' radiomic features differ (different extraction settings)")
    return frd_statistic(real.values, synth.values, version)


def frd_replicates(real: np.ndarray, synth: np.ndarray, version: str, boot: Any) -> np.ndarray:
    """Bootstrap replicates (``genbench.stats`` streams REAL and SYNTH): both sets resampled over
    images and the whole normalise-then-distance pipeline rerun, the real resample being the
    normalisation reference as the real set is for the value."""
    from genbench.stats import REAL, SYNTH

    nr, ns = len(real), len(synth)
    out = np.empty(boot.replicates)
    for i in range(boot.replicates):
        ir = boot.indices(nr, REAL, i, i + 1)[0]
        is_ = boot.indices(ns, SYNTH, i, i + 1)[0]
        try:
            out[i] = frd_statistic(real[ir], synth[is_], version).value
        except GenbenchError:
            out[i] = np.nan  # a degenerate resample (all features dropped); stats drops it
    return out


def _labels_of(images: Any) -> np.ndarray:
    labels = images.meta.get("labels") if hasattr(images, "meta") else None
    if labels is None:
        raise GenbenchError(
            "--frd-masks: this set carries no label maps (generated images never do, and folders of "
            "images have none); organ-masked FRD needs one label map per image "
            "(ImageSet.meta['labels'], N x H x W); without --frd-masks FRD uses the whole image")
    lab = np.asarray(labels)
    if lab.ndim == 4:
        lab = lab[:, 0]
    if lab.shape != (len(images), *images.images.shape[-2:]):
        raise GenbenchError(f"--frd-masks: label maps of shape {lab.shape} do not match the "
                            f"{len(images)} images of {tuple(images.images.shape[-2:])} px")
    return lab


def compute_frd_metric(ctx: Any) -> Any:
    """Registry entry: FRD of SYNTH against REAL (REAL is the normalisation reference).

    Radiomic features are per image: computed once per underlying set (shared with the floor,
    whose sets are rows of REAL), cached on disk per image content."""
    from genbench.metrics.result import MetricResult

    opts = ctx.options
    version = check_version(opts.frd_version)
    masked = bool(opts.frd_masks)

    def features(which: str) -> RadiomicFeatures:
        def compute(images: Any) -> RadiomicFeatures:
            masks = masks_from_labels(_labels_of(images)) if masked else None
            with ctx.step(f"FRD radiomic features ({which})", len(images)) as step:
                return radiomic_features(images, masks=masks, version=version, n_jobs=opts.n_jobs,
                                         cache_dir=opts.cache_dir, use_cache=opts.use_cache,
                                         progress=step.absolute, dist=ctx.dist)
        return ctx.per_image(("radiomics", version, masked), which, compute)

    fr, fs = features("real"), features("synth")
    with ctx.step("FRD", 1):
        st = frd_from_features(fr, fs, version)
        params = {**st.params(), "frd_score": fr.settings.get("frd_score"),
                  "pyradiomics": fr.settings.get("pyradiomics"),
                  "n_features_extracted": fr.n_features,
                  "masks": "organ masks (label > 0)" if masked else "whole image"
                  + (" minus one corner pixel (frd-score's pyradiomics work-around)" if version == "v1" else ""),
                  "input": fr.settings.get("input"), "reference": "real set (D1)",
                  "skipped_images": {"real": int((~fr.kept).sum()), "synth": int((~fs.kept).sum())}}
        res = MetricResult(name="frd", value=st.value, params=params, n_real=st.n_real, n_synth=st.n_synth)
        boot = ctx.boot
        if boot.enabled:
            from genbench.stats import attach_ci

            attach_ci(res, frd_replicates(fr.values, fs.values, version, boot), boot,
                      bounds=(0.0, None) if version == "v0" else (None, None),
                      params={"ci_statistic": "the whole FRD pipeline (normalisation included) on "
                                              "resampled images of both sets"})
    return res


def masks_from_labels(labels: np.ndarray, organs: Sequence[int] | None = None) -> np.ndarray:
    """Bool (N, H, W) organ masks from integer label maps: label > 0 (or in ``organs``)."""
    lab = np.asarray(labels)
    if lab.ndim == 4:
        lab = lab[:, 0]
    return np.isin(lab, list(organs)) if organs else lab > 0
