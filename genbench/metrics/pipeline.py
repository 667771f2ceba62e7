"""Every metric between two image sets, once: the engine behind ``genbench metrics``, the runner
and the Python API (:func:`genbench.evaluate`).

The metrics come from the registry (:mod:`genbench.metrics.registry`); each gets a
:class:`MetricContext` holding the two sets, the options and two memo tables: per-image
quantities (Inception features, radiomic features, ...) are computed once per underlying set and
shared by every metric, by the real-vs-real floor (whose sets are rows of REAL) and, through
:class:`PreparedReal`, by every later call that scores a new synthetic set against the same REAL.
A metric that raises becomes a result with status "failed" (or "unavailable" when the reason is
something the user can fix, such as missing weights or too few images), never a crash.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench import __version__
from genbench.distributed import LOCAL, Dist
from genbench.errors import GenbenchError, UsageError
from genbench.imageset import ImageSet
from genbench.metrics.registry import REGISTRY
from genbench.metrics.result import MetricResult
from genbench.progress import ProgressFactory, Step

__all__ = [
    "EvalOptions",
    "EvalReport",
    "FloorPlan",
    "MetricContext",
    "PreparedReal",
    "SetInfo",
    "evaluate",
    "floor",
    "floor_plan",
    "floor_split",
    "parse_metric_names",
]


def parse_metric_names(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """'is,fid,prc' -> ('is', 'fid', 'precision', 'recall') in registry order; UsageError on unknown names."""
    return REGISTRY.parse(spec)


def cli(flag: str, help: str, *, run: bool = True) -> dict[str, Any]:
    """Field metadata that makes an :class:`EvalOptions` field a command-line option of
    ``genbench metrics`` (and of ``genbench run`` unless ``run=False``)."""
    return {"cli": flag, "help": help, "run": run}


@dataclass
class EvalOptions:
    """Everything that determines the metric values (and is written to the report).

    Fields with ``cli`` metadata are the command-line options of ``genbench metrics`` and
    ``genbench run``, declared here once (see ``genbench.commands.options``).
    """

    metrics: tuple[str, ...] = field(default_factory=REGISTRY.default_names, metadata=cli(
        "--metrics", "Comma list of metric names, aliases or groups (see `genbench metrics --help`); "
        "default: all."))
    inception_weights: Path | None = field(default=None, metadata=cli(
        "--inception-weights", "Inception-v3 weights file (torch-fidelity's pt_inception-2015-12-05). "
        "Default: torch-fidelity's cache. Never downloaded."))
    inception_backend: str = field(default="genbench", metadata=cli(
        "--inception-backend", "'genbench' (fast, cached features) or 'torch-fidelity' (reference).",
        run=False))
    device: str = "auto"  # "cpu", "cuda", "cuda:1", "auto"; a runtime setting: not part of identity
    batch_size: int = field(default=32, metadata=cli("--batch-size", "Feature extraction batch size."))
    seed: int | None = None  # None: IS/KID use torch-fidelity's 2020, everything else 0 (base_seed)
    fds_seeds: int = field(default=3, metadata=cli("--fds-seeds", "Number of t-SNE seeds FDS averages over."))
    fds_perplexity: float = 30.0
    fds_pca_dims: int = 50
    floor: bool = False
    strict: bool = False  # missing weights raise WeightsUnavailableError instead of 'unavailable'
    cache_dir: Path | None = None  # feature cache; None: $GENBENCH_CACHE/features
    use_cache: bool = True
    kid_subset_size: int | None = field(default=None, metadata=cli(
        "--kid-subset-size", "KID subset size. Default: min(n_real, n_synth, 1000)."))
    n_jobs: int | None = None
    ci: float = field(default=0.95, metadata=cli(
        "--ci", "Confidence level of every metric's interval (bootstrap over images; t-SNE seeds for FDS)."))
    bootstrap: int = field(default=1000, metadata=cli(
        "--bootstrap", "Bootstrap replicates per metric for its CI and the model-vs-model tests; 0: none."))
    ds_smoothing: str = field(default="laplace", metadata=cli(
        "--ds-smoothing", "DS estimator: 'laplace' (one pseudo-count per bin; DS <= ~ln(n + bins)) or "
        "'epsilon' (paper-compatible: 1e-10 per bin, the paper's scale)."))
    mem_quantile: float = field(default=0.99, metadata=cli(
        "--mem-quantile", "mem: flag a synthetic image whose nearest-training SSIM exceeds this "
        "quantile of the held-out real images' (default 0.99)."))
    mem_transforms: str = field(default="none", metadata=cli(
        "--mem-transforms", "mem: also search training images flipped and/or shifted: none, or a "
        "comma list of flip, shift1..shift8 (cost x2 for flip, x(2K+1)^2 for shiftK)."))
    c2st_folds: int = field(default=5, metadata=cli("--c2st-folds", "C2ST: cross-validation folds."))
    c2st_epochs: int = field(default=12, metadata=cli("--c2st-epochs", "C2ST: training epochs per fold."))
    c2st_permutations: int = field(default=0, metadata=cli(
        "--c2st-permutations", "C2ST: label permutations for the permutation p-value (each repeats "
        "the whole cross-validation; e.g. 99); 0: exact binomial p only."))
    frd_version: str = field(default="v1", metadata=cli(
        "--frd-version", "FRD version: v1 (Konz, Osuala et al. 2026; default) or v0 (Osuala et al. 2024)."))
    frd_masks: bool = field(default=False, metadata=cli(
        "--frd-masks", "FRD inside organ masks (label > 0 of each set's label maps) instead of the whole image."))
    backbones: tuple[str, ...] = field(default=(), metadata=cli(
        "--backbone", "NAME:PATH[:SHA256] of a local weights file (dinov2-vit-b14, dinov2-vit-l14, "
        "swav-r50, radimagenet-r50), comma-separated for several; adds FD, KID, precision, recall, "
        "density and coverage on it. Checked by SHA-256, never downloaded."))
    feature_window: str = field(default="full", metadata=cli(
        "--feature-window", "Intensities fed to a --backbone: 'full' (the stored range) or LO,HI in the "
        "set's units (HU for CT presets), e.g. -160,240 for soft tissue."))
    msssim_pairs: int = field(default=1000, metadata=cli(
        "--msssim-pairs", "Random pairs of distinct images per set for MS-SSIM diversity."))
    vendi_kernel: str = field(default="pixel", metadata=cli(
        "--vendi-kernel", "Vendi score kernel: pixel (vendi-score's 32x32 pixel cosine) or ssim."))
    # How the report was computed (set by evaluate(); runtime facts, not part of identity: the
    # values do not depend on them): processes of a torchrun job and their backend.
    world_size: int = 1
    dist_backend: str | None = None
    # False: compute in this process alone even under torchrun (e.g. inside
    # ``if accelerator.is_main_process:``); True: every rank of the job must call evaluate().
    distributed: bool = True

    def __post_init__(self) -> None:
        from genbench.metrics.backbones import (backbone_metric_names, backbone_requests, check_backbone_file,
                                                parse_backbones, parse_feature_window)
        from genbench.metrics.frd import check_version
        from genbench.metrics.vendi import check_kernel

        self.backbones = parse_backbones(self.backbones)
        for request in backbone_requests(self.backbones).values():
            check_backbone_file(request)  # a wrong file is one line, before any work
        self.metrics = parse_metric_names(tuple(parse_metric_names(self.metrics))
                                          + backbone_metric_names(self.backbones))
        self.frd_version = check_version(self.frd_version)
        self.vendi_kernel = check_kernel(self.vendi_kernel)
        self.feature_window = parse_feature_window(self.feature_window).label()
        if self.msssim_pairs < 1:
            raise UsageError("--msssim-pairs must be >= 1")
        if self.inception_weights is not None:
            self.inception_weights = Path(self.inception_weights)
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        if self.batch_size < 1:
            raise UsageError("--batch-size must be >= 1")
        if self.fds_seeds < 1:
            raise UsageError("--fds-seeds must be >= 1")
        if self.kid_subset_size is not None and self.kid_subset_size < 2:
            raise UsageError("--kid-subset-size must be >= 2")
        if not 0.5 <= self.mem_quantile < 1.0:
            raise UsageError(f"--mem-quantile must be in [0.5, 1), got {self.mem_quantile}")
        from genbench.metrics.mem import parse_transforms

        parse_transforms(self.mem_transforms)
        if self.inception_backend not in ("genbench", "torch-fidelity"):
            raise UsageError("--inception-backend must be 'genbench' or 'torch-fidelity', "
                             f"got {self.inception_backend!r}")
        if self.seed is not None and self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        from genbench.metrics.ds import ESTIMATORS

        if self.ds_smoothing not in ESTIMATORS:
            raise UsageError(f"--ds-smoothing must be one of {', '.join(ESTIMATORS)}, got {self.ds_smoothing!r}")
        self.boot()  # validates --ci and --bootstrap
        if self.c2st_folds < 2 or self.c2st_epochs < 1 or self.c2st_permutations < 0:
            raise UsageError("--c2st-folds must be >= 2, --c2st-epochs >= 1 and --c2st-permutations >= 0")

    @property
    def base_seed(self) -> int:
        """The seed of everything but IS/KID (FDS's t-SNE, the floor draw, the bootstrap): 0 unless given."""
        return 0 if self.seed is None else int(self.seed)

    def boot(self) -> Any:
        """The bootstrap settings every metric's CI uses (one seed for all: paired model tests)."""
        from genbench.stats import Bootstrap

        return Bootstrap(replicates=self.bootstrap, seed=self.base_seed, level=self.ci)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["metrics"] = list(self.metrics)
        out["backbones"] = list(self.backbones)  # as JSON reads it back (a tuple != a list)
        for key, val in out.items():
            if isinstance(val, Path):
                out[key] = str(val)
        return out

    def identity(self) -> dict[str, Any]:
        """What changes the values: everything but runtime settings and where files are."""
        out = self.to_json()
        for key in ("device", "cache_dir", "use_cache", "n_jobs", "strict", "batch_size", "floor"):
            out.pop(key, None)
        for key in ("world_size", "dist_backend", "distributed"):
            out.pop(key, None)
        if self.inception_weights is not None:
            from genbench.io.hashing import file_sha256

            out["inception_weights"] = file_sha256(self.inception_weights) \
                if self.inception_weights.is_file() else str(self.inception_weights)
        return out


@dataclass
class SetInfo:
    path: str | None
    n: int
    sha256: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, images: ImageSet, sha256: str | None = None) -> SetInfo:
        path = images.meta.get("path")
        return cls(path=None if path is None else str(path), n=len(images),
                   sha256=sha256 or images.sha256(), skipped=list(images.skipped))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "n": self.n, "sha256": self.sha256,
                "skipped": [{"source": s, "reason": r} for s, r in self.skipped]}


@dataclass
class EvalReport:
    """What ``genbench metrics --json`` writes: every registered metric (and floor), in registry order."""

    real: SetInfo
    synth: SetInfo
    metrics: dict[str, MetricResult]
    floor: dict[str, MetricResult] | None
    options: EvalOptions
    genbench_version: str = __version__
    elapsed_s: float = 0.0
    floor_info: dict[str, Any] | None = None  # how the floor was drawn (see floor_plan)

    def requested(self) -> dict[str, MetricResult]:
        return {m: self.metrics[m] for m in self.options.metrics}

    def not_ok(self) -> dict[str, MetricResult]:
        """Requested metrics (or their floors) whose status is not 'ok'."""
        bad = {m: r for m, r in self.requested().items() if r.status != "ok"}
        for m, r in (self.floor or {}).items():
            if m in self.options.metrics and r.status != "ok" and m not in bad:
                bad[f"floor.{m}"] = r
        return bad

    def value(self, name: str) -> float | None:
        return self.metrics[name].value

    def to_json(self) -> dict[str, Any]:
        return {
            "genbench_version": self.genbench_version,
            "real": self.real.to_json(),
            "synth": self.synth.to_json(),
            "metrics": {m: r.to_json() for m, r in self.metrics.items()},
            "floor": None if self.floor is None else {m: r.to_json() for m, r in self.floor.items()},
            "floor_info": self.floor_info,
            "options": self.options.to_json(),
            "elapsed_s": round(self.elapsed_s, 3),
        }


# ---------------------------------------------------------------------------------------------


@dataclass
class MetricContext:
    """What a metric's compute function receives (see ``docs/adding-a-metric.md``).

    ``real``/``synth``/``train`` are the sets being compared. ``sources`` says which underlying
    set each one is (and which rows of it), so :meth:`per_image` computes a per-image quantity
    once per underlying set. ``shared`` outlives this context (model and floor, PreparedReal);
    ``local`` lives for this pair of sets only.
    """

    real: ImageSet
    synth: ImageSet
    options: EvalOptions
    device: str
    wanted: tuple[str, ...]
    train: ImageSet | None = None
    is_floor: bool = False
    title: str = ""
    progress: ProgressFactory | None = None
    shared: dict[Any, Any] = field(default_factory=dict)
    local: dict[Any, Any] = field(default_factory=dict)
    sources: dict[str, tuple[ImageSet, np.ndarray | None]] = field(default_factory=dict)
    dist: Dist = LOCAL  # the torchrun job a ``distributed`` metric divides its work over

    @property
    def seed(self) -> int:
        return self.options.base_seed

    @property
    def boot(self) -> Any:
        """``genbench.stats.Bootstrap`` for this evaluation: pass it to the metric's replicate function
        and ``genbench.stats.attach_ci`` (replicates count 0 means no intervals: ``boot.enabled``).
        In a ``distributed`` metric under torchrun: this rank's share of the replicates
        (``genbench.distributed.BootstrapShard``), put back together by ``attach_ci``."""
        from genbench.distributed import shard_bootstrap

        return shard_bootstrap(self.options.boot(), self.dist)

    def set(self, which: str) -> ImageSet:
        found = {"real": self.real, "synth": self.synth, "train": self.train}.get(which)
        if found is None:
            from genbench.errors import InputError

            raise InputError(f"this metric needs the {which} set; none was given", which)
        return found

    def sha256(self, images: ImageSet) -> str:
        table = self.shared.setdefault("_sha256", {})
        key = id(images)
        if key not in table:
            table[key] = (images, images.sha256())  # keep the set alive so its id stays unique
        return table[key][1]

    def _source(self, which: str) -> tuple[ImageSet, np.ndarray | None]:
        return self.sources.get(which) or (self.set(which), None)

    def per_image(self, kind: str, which: str, compute: Callable[[ImageSet], Any]) -> Any:
        """``compute(set)`` (rows in image order) memoised per underlying set; rows selected for subsets.

        The result must support ``.subset(rows)`` or numpy-style ``[rows]`` indexing.
        """
        parent, rows = self._source(which)
        key = (kind, self.sha256(parent))
        if not self._memoised(key):
            self.shared[key] = compute(parent)
        value = self.shared[key]
        if rows is None:
            return value
        return value.subset(rows) if hasattr(value, "subset") else value[rows]

    def per_set(self, kind: str, which: str, compute: Callable[[ImageSet], Any]) -> Any:
        """``compute(set)`` for a whole-set quantity (e.g. nearest neighbours within the set):
        memoised across contexts only when the set is a whole underlying set, never for subsets."""
        parent, rows = self._source(which)
        images = self.set(which)
        if rows is not None:
            return self.once((kind, which), lambda: compute(images))
        key = (kind, self.sha256(parent))
        if not self._memoised(key):
            self.shared[key] = compute(parent)
        return self.shared[key]

    def _memoised(self, key: Any) -> bool:
        # Under torchrun a memo filled by a rank-0-only metric exists on rank 0 alone: a
        # distributed computation runs again on every rank unless all of them hold it.
        return self.dist.all_true(key in self.shared)

    def once(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per context; an exception is remembered and raised again."""
        if key not in self.local:
            try:
                self.local[key] = (True, compute())
            except Exception as exc:  # noqa: BLE001 - re-raised for every metric that asks
                self.local[key] = (False, exc)
        ok, value = self.local[key]
        if not ok:
            raise value
        return value

    def step(self, description: str, total: int | None) -> Step:
        return Step(self.progress, f"{self.title}{description}", total)


def _guarded(name: str, fn: Callable[[], MetricResult]) -> MetricResult:
    t0 = time.perf_counter()
    try:
        res = fn()
    except GenbenchError as exc:
        res = MetricResult.unavailable(name, str(exc))
    except Exception as exc:  # noqa: BLE001 - a metric's bug must not lose the others
        res = MetricResult.failed(name, f"{type(exc).__name__}: {exc}")
    if res.elapsed_s == 0.0:
        res.elapsed_s = time.perf_counter() - t0
    return res


def _score(ctx: MetricContext, extra_params: dict[str, Any]) -> dict[str, MetricResult]:
    out: dict[str, MetricResult] = {}
    for name in ctx.wanted:
        spec = REGISTRY[name]
        run_ctx = ctx
        if ctx.dist.enabled and not spec.distributed:
            # Not written for several processes: rank 0 computes it alone (the others receive
            # its result in evaluate()'s broadcast).
            if not ctx.dist.is_main:
                out[name] = MetricResult.unavailable(name, "computed on rank 0")
                continue
            run_ctx = dataclasses.replace(ctx, dist=LOCAL)  # same memo tables
        res = _guarded(name, lambda spec=spec, run_ctx=run_ctx: spec.load()(run_ctx))
        res.name = name
        res.params = {**res.params, **extra_params}
        if res.n_real is None:
            res.n_real = len(ctx.real)
        if res.n_synth is None:
            res.n_synth = len(ctx.synth)
        out[name] = res
    return out


def _complete(results: dict[str, MetricResult]) -> dict[str, MetricResult]:
    """Every registered metric, in registry order; the ones not asked for say so."""
    full = {}
    for name in REGISTRY.names():
        full[name] = results.get(name) or MetricResult.unavailable(name, "not requested (see --metrics)")
    return full


def _resolve_device(device: str, dist: Dist = LOCAL) -> str:
    from genbench.distributed import resolve_device

    return str(resolve_device(device, dist))


def floor_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of range(n) (sorted indices), chosen by ``seed``; an odd one out is dropped."""
    perm = np.random.default_rng(seed).permutation(n)
    h = n // 2
    return np.sort(perm[:h]), np.sort(perm[h:2 * h])


@dataclass
class PreparedReal:
    """A real set whose per-image quantities are computed once and reused by every :meth:`evaluate`.

    For scoring a training run every N steps: only the synthetic side is computed each time.
    """

    real: ImageSet
    options: EvalOptions
    train: ImageSet | None = None
    shared: dict[Any, Any] = field(default_factory=dict)

    def evaluate(self, synth: Any, *, metrics: Iterable[str] | str | None = None,
                 progress: ProgressFactory | None = None) -> EvalReport:
        """``synth``: an ImageSet, a tensor/array or a folder (see :func:`genbench.api.as_imageset`)."""
        from genbench.api import as_imageset

        synth = as_imageset(synth, what="synth")
        try:
            return evaluate(self.real, synth, self.options, metrics=metrics, progress=progress,
                            train=self.train, _shared=self.shared)
        finally:
            self._forget_all_but_real()

    def _forget_all_but_real(self) -> None:
        # A training loop scores a new synthetic set each time: keep only the real side's memos.
        shas = self.shared.get("_sha256", {})
        keep = {sha for images, sha in shas.values() if images is self.real or images is self.train}
        self.shared["_sha256"] = {k: v for k, v in shas.items() if v[1] in keep}
        for key in [k for k in self.shared if k != "_sha256"]:
            if not (isinstance(key, tuple) and len(key) == 2 and key[1] in keep):
                del self.shared[key]


def evaluate(real: ImageSet, synth: ImageSet, options: EvalOptions | None = None, *,
             metrics: Iterable[str] | str | None = None, progress: ProgressFactory | None = None,
             train: ImageSet | None = None, floor_real: ImageSet | None = None,
             _shared: dict[Any, Any] | None = None) -> EvalReport:
    """All requested metrics of SYNTH against REAL (and, with ``options.floor``, the real-vs-real floor).

    ``metrics`` overrides ``options.metrics``. ``train`` is the generator's training set (metrics
    of the ``train`` family need it). The floor compares REAL with ``floor_real``, a second real
    sample disjoint from REAL, at REAL's size (size-matched); without one, two halves of REAL
    (n = N/2, labelled so: see :func:`floor_plan`). With ``options.strict``, missing Inception
    weights raise ``WeightsUnavailableError`` before anything is computed.
    """
    t0 = time.perf_counter()
    options = dataclasses.replace(options) if options is not None else EvalOptions()
    if metrics is not None:
        options.metrics = parse_metric_names(metrics)
    if len(real) == 0 or len(synth) == 0:
        raise UsageError(f"empty image set (real: {len(real)}, synth: {len(synth)} images)")
    if options.strict and any(REGISTRY[m].family == "inception" for m in options.metrics):
        from genbench.metrics.inception import resolve_inception_weights

        resolve_inception_weights(options.inception_weights)
    shared = _shared if _shared is not None else {}
    dist = _job(options.device) if options.distributed else LOCAL
    options.world_size, options.dist_backend = dist.world_size, dist.backend
    device = _resolve_device(options.device, dist)
    ctx = MetricContext(real=real, synth=synth, train=train, options=options, device=device,
                        wanted=options.metrics, progress=progress, shared=shared, dist=dist)
    info_real, info_synth = SetInfo.of(real, ctx.sha256(real)), SetInfo.of(synth, ctx.sha256(synth))
    results = _score(ctx, {})
    floor_results, info = None, None
    if options.floor:
        fctx, info = _floor_context(real, floor_real, train, options, device, progress, shared, dist)
        floor_results = _score(fctx, {"floor": info})
    if dist.enabled:  # every rank returns rank 0's results
        results, floor_results = dist.broadcast_object((results, floor_results))
    return EvalReport(real=info_real, synth=info_synth, metrics=_complete(results),
                      floor=None if floor_results is None else _complete(floor_results),
                      options=options, elapsed_s=time.perf_counter() - t0, floor_info=info)


def _job(device: str) -> Dist:
    """The torchrun / ``accelerate launch`` job this process belongs to (joined here when the
    environment describes one that nobody has initialised yet), or one process."""
    from genbench import distributed

    return distributed.current() if distributed.env_world_size() <= 1 else distributed.init_from_env(device)


@dataclass
class FloorPlan:
    """Which images the real-vs-real floor compares (rows of REAL and of the other real sample)."""

    real_rows: np.ndarray | None  # None: all of REAL
    other_rows: np.ndarray         # rows of ``other`` (or of REAL, for halves) playing "synthetic"
    info: dict[str, Any]


def floor_plan(n_real: int, n_other: int | None, seed: int) -> FloorPlan:
    """The floor's draw. With a second real sample of ``n_other`` images: ``n_real`` of them at
    random (size-matched: the floor is scored at the models' N); if it is smaller, an equally
    small random subset of REAL against all of it (labelled, not size-matched). Without one: two
    disjoint random halves of REAL, labelled ``n = N/2``: FID, KID, FDS and DS are biased at
    smaller N, so a half-size floor is worse than "indistinguishable" at the models' N."""
    rng = np.random.default_rng([seed, 0xF1])
    if n_other is None:
        ia, ib = floor_split(n_real, seed)
        return FloorPlan(ia, ib, {
            "method": "halves", "size_matched": False, "n_real": len(ia), "n_synth": len(ib), "split_seed": seed,
            "note": f"two disjoint halves of REAL: n = N/2 = {len(ia)} (N = {n_real}), not the models' N; "
                    "FID/KID/FDS/DS read worse at half size"})
    m = min(n_real, n_other)
    other_rows = np.sort(rng.choice(n_other, m, replace=False))
    real_rows = None if m == n_real else np.sort(rng.choice(n_real, m, replace=False))
    info: dict[str, Any] = {"method": "size-matched" if m == n_real else "second real sample (smaller)",
                            "size_matched": m == n_real, "n_real": m, "n_synth": m, "seed": seed}
    if m < n_real:
        info["note"] = (f"the second real sample has only {n_other} images: REAL subsampled to n = {m} "
                        f"(N = {n_real}), not the models' N")
    else:
        info["note"] = f"REAL (N = {n_real}) vs {m} images of a disjoint real sample"
    return FloorPlan(real_rows, other_rows, info)


def _floor_context(real: ImageSet, other: ImageSet | None, train: ImageSet | None, options: EvalOptions,
                   device: str, progress: ProgressFactory | None, shared: dict[Any, Any],
                   dist: Dist = LOCAL) -> tuple[MetricContext, dict[str, Any]]:
    plan = floor_plan(len(real), None if other is None else len(other), options.base_seed)
    sources: dict[str, tuple[ImageSet, np.ndarray | None]] = {}
    if other is None:
        f_real, f_synth = real.subset(plan.real_rows), real.subset(plan.other_rows)
        sources = {"real": (real, plan.real_rows), "synth": (real, plan.other_rows)}
    else:
        f_synth = other.subset(plan.other_rows)
        f_real = real if plan.real_rows is None else real.subset(plan.real_rows)
        if plan.real_rows is not None:
            sources["real"] = (real, plan.real_rows)
        src = other.meta.get("path") or other.meta.get("split")
        if src is not None:
            plan.info["other"] = str(src)
        if train is not None and train is other:
            # The floor's "synthetic" images come from the training set: train-family metrics
            # (memorisation) compare them with the rest of it, as they would a fresh sample.
            rest = np.setdiff1d(np.arange(len(other)), plan.other_rows)
            train = other.subset(rest) if len(rest) else None
            plan.info["train_for_floor"] = "the training set minus the floor's sample"
    fctx = MetricContext(real=f_real, synth=f_synth, train=train, options=options, device=device,
                         wanted=options.metrics, is_floor=True, title="floor: ", progress=progress,
                         shared=shared, sources=sources, dist=dist)
    return fctx, plan.info


def floor(real: ImageSet, options: EvalOptions | None = None, *, other: ImageSet | None = None,
          train: ImageSet | None = None, progress: ProgressFactory | None = None) -> EvalReport:
    """The real-vs-real floor alone: REAL against an equally sized sample of ``other`` (a disjoint
    real set, e.g. the training split), or half A against half B of REAL without one. The
    report's ``floor_info`` (and each metric's ``params["floor"]``) says which."""
    options = dataclasses.replace(options) if options is not None else EvalOptions()
    options.floor = False
    shared: dict[Any, Any] = {}
    device = _resolve_device(options.device)
    fctx, info = _floor_context(real, other, train, options, device, progress, shared)
    report = evaluate(fctx.real, fctx.synth, options, progress=progress, train=fctx.train, _shared=shared)
    for r in report.metrics.values():
        r.params = {**r.params, "floor": info}
    report.floor_info = info
    return report
