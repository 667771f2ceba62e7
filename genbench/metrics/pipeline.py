"""Every metric between two image sets, once: the engine behind ``genbench metrics`` and the runner.

Each set is decoded once by the caller; here its content hash is computed once, its Inception
features once (and cached on disk), and the tensors and features are shared by all metrics and by
the real-vs-real floor (two disjoint random halves of REAL, chosen with the seed). A metric that
raises becomes a result with status "failed" (or "unavailable" when the reason is something the
user can fix, such as missing weights or too few images), never a crash.
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
from genbench.errors import GenbenchError, UsageError
from genbench.imageset import ImageSet
from genbench.metrics.result import METRIC_NAMES, MetricResult

__all__ = [
    "METRIC_ALIASES",
    "EvalOptions",
    "EvalReport",
    "ProgressFactory",
    "SetInfo",
    "evaluate",
    "floor",
    "floor_split",
    "parse_metric_names",
]

# Names accepted by --metrics: the metric names themselves plus groups.
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "prc": ("precision", "recall"),
    "pr": ("precision", "recall"),
    "all": METRIC_NAMES,
    "inception": ("is", "fid", "kid", "precision", "recall"),
}
INCEPTION_METRICS = ("is", "fid", "kid", "precision", "recall")

# progress(description, total) -> advance(n, total=None): lets the CLI draw bars without this module
# knowing rich. ``total`` given to advance replaces the step's total (FDS/DS learn theirs late).
ProgressFactory = Callable[[str, "int | None"], Callable[..., None]]


def parse_metric_names(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """'is,fid,prc' -> ('is', 'fid', 'precision', 'recall') in canonical order; UsageError on unknown names."""
    if spec is None:
        return METRIC_NAMES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen: set[str] = set()
    bad = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name in METRIC_NAMES:
            chosen.add(name)
        elif name in METRIC_ALIASES:
            chosen.update(METRIC_ALIASES[name])
        else:
            bad.append(raw.strip())
    if bad or not chosen:
        valid = ", ".join([*METRIC_NAMES, *METRIC_ALIASES])
        what = f"unknown metric name(s): {', '.join(bad)}" if bad else "no metric selected"
        raise UsageError(f"--metrics: {what}; valid names: {valid}")
    return tuple(m for m in METRIC_NAMES if m in chosen)


@dataclass
class EvalOptions:
    """Everything that determines the metric values (and is written to the report)."""

    metrics: tuple[str, ...] = METRIC_NAMES
    inception_weights: Path | None = None  # None: torch-fidelity's cache (torch hub); never downloaded
    inception_backend: str = "genbench"  # or "torch-fidelity" (the reference, slower)
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", "auto"
    batch_size: int = 32
    seed: int = 0
    fds_seeds: int = 3
    fds_perplexity: float = 30.0
    fds_pca_dims: int = 50
    floor: bool = False
    strict: bool = False  # missing weights raise WeightsUnavailableError instead of 'unavailable'
    cache_dir: Path | None = None  # Inception feature cache; None: $GENBENCH_CACHE/features or ~/.cache/...
    use_cache: bool = True
    kid_subset_size: int | None = None  # None: min(n_real, n_synth, 1000)
    n_jobs: int | None = None

    def __post_init__(self) -> None:
        self.metrics = parse_metric_names(self.metrics)
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
        if self.inception_backend not in ("genbench", "torch-fidelity"):
            raise UsageError("inception backend must be 'genbench' or 'torch-fidelity'")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["metrics"] = list(self.metrics)
        for key in ("inception_weights", "cache_dir"):
            out[key] = None if out[key] is None else str(out[key])
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
    real: SetInfo
    synth: SetInfo
    metrics: dict[str, MetricResult]
    floor: dict[str, MetricResult] | None
    options: EvalOptions
    genbench_version: str = __version__
    elapsed_s: float = 0.0

    def requested(self) -> dict[str, MetricResult]:
        return {m: self.metrics[m] for m in self.options.metrics}

    def not_ok(self) -> dict[str, MetricResult]:
        """Requested metrics (or their floors) whose status is not 'ok'."""
        bad = {m: r for m, r in self.requested().items() if r.status != "ok"}
        for m, r in (self.floor or {}).items():
            if m in self.options.metrics and r.status != "ok" and m not in bad:
                bad[f"floor.{m}"] = r
        return bad

    def to_json(self) -> dict[str, Any]:
        return {
            "genbench_version": self.genbench_version,
            "real": self.real.to_json(),
            "synth": self.synth.to_json(),
            "metrics": {m: self.metrics[m].to_json() for m in METRIC_NAMES},
            "floor": None if self.floor is None else {m: self.floor[m].to_json() for m in METRIC_NAMES},
            "options": self.options.to_json(),
            "elapsed_s": round(self.elapsed_s, 3),
        }


# ---------------------------------------------------------------------------------------------


def floor_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of range(n) (sorted indices), chosen by ``seed``; an odd one out is dropped."""
    perm = np.random.default_rng(seed).permutation(n)
    h = n // 2
    return np.sort(perm[:h]), np.sort(perm[h:2 * h])


def _not_requested() -> MetricResult:
    return MetricResult.unavailable("", "not requested (see --metrics)")


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


class _Step:
    """A progress step that always completes, even when the work raises."""

    def __init__(self, progress: ProgressFactory | None, description: str, total: int | None) -> None:
        self.advance = progress(description, total) if progress else (lambda n, total=None: None)
        self.total, self.done = total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        self.advance(n)

    def absolute(self, done: int, total: int) -> None:
        """Adapter for the metrics that report ``progress(done, total)`` (FDS, DS)."""
        if total != self.total:
            self.total = total
            self.advance(0, total=total)
        if done > self.done:
            self(done - self.done)

    def __enter__(self) -> _Step:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.total is None:
            self.advance(1, total=1)
            return
        left = self.total - self.done
        if left > 0:
            self.advance(left)


def _inception_features(sets: list[tuple[str, ImageSet, str]], options: EvalOptions,
                        progress: ProgressFactory | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Features per set label, or raise GenbenchError (missing weights and the like)."""
    from genbench.metrics.fidelity import BACKBONE, _resolve_device
    from genbench.metrics.inception import InceptionFeatureExtractor

    ext = InceptionFeatureExtractor(options.inception_weights, device=_resolve_device(options.device),
                                    batch_size=options.batch_size)
    feats = {}
    for label, images, sha in sets:
        with _Step(progress, f"Inception features ({label})", len(images)) as step:
            feats[label], _hit = ext.features(images.images, cache_dir=options.cache_dir, content_sha256=sha,
                                              progress=step, use_cache=options.use_cache)
    common = {"backbone": BACKBONE, "weights_sha256": ext.weights_sha256, "backend": "genbench",
              "preprocessing": ext.preprocessing()}
    return feats, common


def _pixel_metric(name: str, real: torch.Tensor, synth: torch.Tensor, options: EvalOptions,
                  extra_params: dict[str, Any], step: _Step) -> MetricResult:
    if name == "fds":
        from genbench.metrics.fds import compute_fds

        seeds = tuple(range(options.seed, options.seed + options.fds_seeds))
        res = compute_fds(real, synth, seeds=seeds, perplexity=options.fds_perplexity,
                          pca_dims=options.fds_pca_dims, n_jobs=options.n_jobs, progress=step.absolute)
    else:
        from genbench.metrics.ds import compute_ds
        from genbench.metrics.fidelity import _resolve_device

        res = compute_ds(real, synth, device=_resolve_device(options.device), progress=step.absolute)
    res.params = {**res.params, **extra_params}
    return res


def _evaluate_pair(real: ImageSet, synth: ImageSet, options: EvalOptions, wanted: tuple[str, ...],
                   inception: tuple[dict[str, Any], dict[str, Any]] | GenbenchError | None,
                   labels: tuple[str, str], progress: ProgressFactory | None,
                   extra_params: dict[str, Any], title: str = "") -> dict[str, MetricResult]:
    out: dict[str, MetricResult] = {}
    inc = [m for m in wanted if m in INCEPTION_METRICS]
    if inc:
        if isinstance(inception, GenbenchError):
            for m in inc:
                out[m] = MetricResult.unavailable(m, str(inception))
        elif inception is not None:
            from genbench.metrics.fidelity import metrics_from_features

            feats, common = inception
            with _Step(progress, f"{title}IS/FID/KID/PR", 1):
                out.update(metrics_from_features(
                    feats[labels[1]], feats[labels[0]], metrics=set(inc), seed=options.seed,
                    kid_subset_size=options.kid_subset_size, common={**common, **extra_params}))
    for m in ("fds", "ds"):
        if m in wanted:
            with _Step(progress, f"{title}{m.upper()}", None) as step:
                out[m] = _guarded(m, lambda m=m, step=step: _pixel_metric(m, real.images, synth.images, options,
                                                                          extra_params, step))
    for m, r in out.items():
        r.name = m
        if r.n_real is None:
            r.n_real = len(real)
        if r.n_synth is None:
            r.n_synth = len(synth)
    return out


def _complete(results: dict[str, MetricResult]) -> dict[str, MetricResult]:
    full = {}
    for m in METRIC_NAMES:
        r = results.get(m)
        if r is None:
            r = _not_requested()
            r.name = m
        full[m] = r
    return full


def evaluate(real: ImageSet, synth: ImageSet, options: EvalOptions | None = None, *,
             metrics: Iterable[str] | str | None = None,
             progress: ProgressFactory | None = None) -> EvalReport:
    """All requested metrics of SYNTH against REAL (and, with ``options.floor``, REAL against itself).

    ``metrics`` overrides ``options.metrics``. With ``options.strict``, missing Inception weights
    raise ``WeightsUnavailableError`` before anything is computed.
    """
    t0 = time.perf_counter()
    options = dataclasses.replace(options) if options is not None else EvalOptions()
    if metrics is not None:
        options.metrics = parse_metric_names(metrics)
    wanted = options.metrics
    if len(real) == 0 or len(synth) == 0:
        raise UsageError(f"empty image set (real: {len(real)}, synth: {len(synth)} images)")

    sha_real, sha_synth = real.sha256(), synth.sha256()
    info_real, info_synth = SetInfo.of(real, sha_real), SetInfo.of(synth, sha_synth)

    inception: tuple[dict[str, Any], dict[str, Any]] | GenbenchError | None = None
    if any(m in INCEPTION_METRICS for m in wanted):
        if options.inception_backend == "torch-fidelity":
            inception = None  # computed below through torch-fidelity itself
            if options.strict:
                from genbench.metrics.inception import resolve_inception_weights

                resolve_inception_weights(options.inception_weights)
        else:
            try:
                inception = _inception_features([("real", real, sha_real), ("synth", synth, sha_synth)],
                                                 options, progress)
            except GenbenchError as exc:
                if options.strict:
                    raise
                inception = exc

    results = _evaluate_pair(real, synth, options, wanted, inception, ("real", "synth"), progress, {})
    if options.inception_backend == "torch-fidelity":
        results.update(_torch_fidelity_metrics(real.images, synth.images, options, wanted))

    floor_results = None
    if options.floor:
        floor_results = _complete(_floor(real, options, wanted, inception, progress))
    return EvalReport(real=info_real, synth=info_synth, metrics=_complete(results), floor=floor_results,
                      options=options, elapsed_s=time.perf_counter() - t0)


def _torch_fidelity_metrics(real: torch.Tensor, synth: torch.Tensor, options: EvalOptions,
                            wanted: tuple[str, ...]) -> dict[str, MetricResult]:
    from genbench.metrics.fidelity import compute_inception_metrics

    return compute_inception_metrics(
        real, synth, metrics=set(wanted), weights=options.inception_weights, device=options.device,
        batch_size=options.batch_size, seed=options.seed, kid_subset_size=options.kid_subset_size,
        backend="torch-fidelity")


def _floor(real: ImageSet, options: EvalOptions, wanted: tuple[str, ...],
           inception: tuple[dict[str, Any], dict[str, Any]] | GenbenchError | None,
           progress: ProgressFactory | None) -> dict[str, MetricResult]:
    ia, ib = floor_split(len(real), options.seed)
    half_a, half_b = real.subset(ia), real.subset(ib)
    params = {"floor": {"split_seed": options.seed, "n_half": len(ia),
                        "method": "two disjoint random halves of REAL (A as real, B as synthetic)"}}
    if isinstance(inception, tuple):
        # Features are per image: the halves' features are rows of REAL's, nothing is recomputed.
        feats, common = inception
        inception = ({"real": feats["real"].subset(ia), "synth": feats["real"].subset(ib)}, common)
    results = _evaluate_pair(half_a, half_b, options, wanted, inception, ("real", "synth"), progress,
                             params, title="floor: ")
    if options.inception_backend == "torch-fidelity":
        for m, r in _torch_fidelity_metrics(half_a.images, half_b.images, options, wanted).items():
            r.params.update(params)
            results[m] = r
    return results


def floor(real: ImageSet, options: EvalOptions | None = None, *,
          progress: ProgressFactory | None = None) -> EvalReport:
    """The real-vs-real floor alone, as a report of half A (as real) against half B (as synthetic)."""
    options = dataclasses.replace(options) if options is not None else EvalOptions()
    options.floor = False
    ia, ib = floor_split(len(real), options.seed)
    return evaluate(real.subset(ia), real.subset(ib), options, progress=progress)
