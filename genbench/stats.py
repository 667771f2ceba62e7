"""Uncertainty for genbench's numbers: bootstrap intervals, exact binomial intervals, paired tests.

Bootstrap over images
---------------------
A metric's confidence interval comes from resampling *images* (with replacement, each set on
its own, at its own size) and recomputing the metric from per-image quantities that were
computed once (Inception features, nearest SSIMs, t-SNE coordinates, k-NN indicators). The
metric module supplies the replicate function; this module supplies the resampling and the
interval.

Determinism: replicate ``i`` of a bootstrap with seed ``s`` draws the indices of set ``k``
("stream": 0 real, 1 synthetic, 2 t-SNE seeds, ...) from ``numpy.random.default_rng([s, i, k])``,
a generator that depends on nothing else. A replicate therefore has the same value whether the
replicates run in one loop, in chunks or in several processes, and in any order; and two models
scored against the same real set with the same seed see the *same* real resample in replicate
``i``, which is what makes the model-vs-model test paired.

Interval (``CI_METHOD``): the percentile interval of the replicates, shifted by the bootstrap
bias estimate so that it is centred on the observed value,
``[q_(a/2) - b, q_(1-a/2) - b]`` with ``b = mean(replicates) - estimate``.
Resampling with replacement duplicates about a third of the images, and several metrics are
biased by duplicates (FID and KL of histograms grow, a nearest-neighbour SSIM of a duplicate is
1): the plain percentile interval of such a metric sits above the observed value and can miss
it altogether. The shift removes that bias, so the interval describes the metric's sampling
spread *at these set sizes* (the quantity the size-matched floor is compared with), keeping the
skewness of the bootstrap distribution. It is clipped to the metric's range where one is given.

Paired test (``paired_bootstrap_pvalue``): the difference of two models' replicates, replicate
by replicate, is centred on zero (the null of no difference) and the two-sided p-value is the
share of centred differences at least as large as the observed difference, with the usual
``(1 + count) / (1 + B)`` correction so that it is never 0. ``holm`` adjusts a family of
p-values (Holm 1979, step-down); ``compare_to_best`` applies both to a metric's column.

Binomial: ``binomial_ci`` is the exact Clopper-Pearson interval (for Turing-test rates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genbench.errors import UsageError

__all__ = [
    "CI_METHOD",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_CI_LEVEL",
    "REAL",
    "SEEDS",
    "SYNTH",
    "Bootstrap",
    "Comparison",
    "attach_ci",
    "binomial_ci",
    "bootstrap",
    "compare_to_best",
    "holm",
    "paired_bootstrap_pvalue",
    "percentile_ci",
    "replicate_rng",
    "resample",
    "resample_matrix",
]

DEFAULT_CI_LEVEL = 0.95
DEFAULT_BOOTSTRAP = 1000
CI_METHOD = "bootstrap over images, percentile interval recentred on the estimate"
ALPHA = 0.05

# Streams: which random sequence of a replicate a set's indices come from.
REAL, SYNTH, SEEDS = 0, 1, 2


def replicate_rng(seed: int, replicate: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one replicate and one stream; depends on these three numbers only."""
    if seed < 0 or replicate < 0 or stream < 0:
        raise UsageError(f"bootstrap seed, replicate and stream must be >= 0, got {seed}, {replicate}, {stream}")
    return np.random.default_rng([int(seed), int(replicate), int(stream)])


def resample(n: int, seed: int, replicate: int, stream: int = 0) -> np.ndarray:
    """``n`` indices drawn with replacement from range(n) for one replicate and stream."""
    return replicate_rng(seed, replicate, stream).integers(0, n, size=n)


def resample_matrix(n: int, seed: int, replicates: Iterable[int], stream: int = 0) -> np.ndarray:
    """(B, n) indices, row ``j`` = ``resample(n, seed, replicates[j], stream)``."""
    rows = [resample(n, seed, i, stream) for i in replicates]
    return np.stack(rows) if rows else np.empty((0, n), dtype=np.int64)


def counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each of range(n) was drawn: (B, n) for (B, m) indices, (n,) for (m,)."""
    idx = np.asarray(indices)
    if idx.ndim == 1:
        return np.bincount(idx, minlength=n)
    b = idx.shape[0]
    flat = (idx + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


@dataclass(frozen=True)
class Bootstrap:
    """How many replicates, which seed, which level: the settings every CI is computed with."""

    replicates: int = DEFAULT_BOOTSTRAP
    seed: int = 0
    level: float = DEFAULT_CI_LEVEL

    def __post_init__(self) -> None:
        if self.replicates < 0:
            raise UsageError(f"--bootstrap must be >= 0 (0 turns confidence intervals off), got {self.replicates}")
        if not 0.0 < self.level < 1.0:
            raise UsageError(f"--ci must be a level in (0, 1), e.g. 0.95; got {self.level}")
        if self.seed < 0:
            raise UsageError(f"bootstrap seed must be >= 0, got {self.seed}")

    @property
    def enabled(self) -> bool:
        return self.replicates > 0

    def indices(self, n: int, stream: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(B, n) resampled indices of replicates start..stop (default: all)."""
        stop = self.replicates if stop is None else stop
        return resample_matrix(n, self.seed, range(start, stop), stream)

    def params(self) -> dict[str, Any]:
        return {"ci_method": CI_METHOD, "ci_level": self.level, "bootstrap_replicates": self.replicates,
                "bootstrap_seed": self.seed}


def bootstrap(statistic: Callable[..., float], sizes: Sequence[int], *, replicates: int, seed: int = 0,
              streams: Sequence[int] | None = None, start: int = 0) -> np.ndarray:
    """Replicates ``start .. start + replicates - 1`` of ``statistic(idx_0, idx_1, ...)``.

    ``sizes[k]`` is the size of set ``k``, resampled on ``streams[k]`` (default: k). The values
    do not depend on ``start``/chunking: replicate i is always computed from the same indices.
    """
    streams = list(range(len(sizes))) if streams is None else list(streams)
    if len(streams) != len(sizes):
        raise ValueError("one stream per set size")
    out = np.empty(replicates, dtype=np.float64)
    for j in range(replicates):
        i = start + j
        out[j] = statistic(*[resample(n, seed, i, s) for n, s in zip(sizes, streams)])
    return out


def percentile_ci(estimate: float, replicates: np.ndarray, level: float = DEFAULT_CI_LEVEL, *,
                  recentre: bool = True, bounds: tuple[float | None, float | None] = (None, None),
                  ) -> tuple[float, float] | None:
    """The CI_METHOD interval (``recentre=False``: the plain percentile interval).

    Non-finite replicates (a degenerate resample) are dropped; with fewer than 2 finite ones, or a
    non-finite estimate, there is no interval (None).
    """
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if reps.size < 2 or not math.isfinite(estimate):
        return None
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [a, 1.0 - a])
    if recentre:
        shift = float(reps.mean()) - float(estimate)
        lo, hi = lo - shift, hi - shift
    if bounds[0] is not None:
        lo, hi = max(lo, bounds[0]), max(hi, bounds[0])
    if bounds[1] is not None:
        lo, hi = min(lo, bounds[1]), min(hi, bounds[1])
    return float(lo), float(hi)


def attach_ci(result: Any, replicates: np.ndarray, boot: Bootstrap, *,
              bounds: tuple[float | None, float | None] = (None, None), method: str = CI_METHOD,
              params: Mapping[str, Any] | None = None) -> None:
    """Give a MetricResult its interval from bootstrap replicates of its value.

    Sets ``ci``/``ci_method``, records the method, level and replicate count in ``params``, and
    keeps the replicates in ``extra["bootstrap"]`` (the paired model-vs-model test reads them).
    """
    gather = getattr(boot, "gather_replicates", None)
    if gather is not None:  # each rank computed a range (genbench.distributed): all of them, in order
        replicates = gather(replicates)
    reps = np.asarray(replicates, dtype=np.float64)
    value = result.value
    ci = None if value is None else percentile_ci(float(value), reps, boot.level, bounds=bounds)
    result.params.update(boot.params())
    result.params["ci_method"] = method
    if params:
        result.params.update(params)
    dropped = int(reps.size - np.count_nonzero(np.isfinite(reps)))
    if dropped:
        result.params["bootstrap_nonfinite"] = dropped
    result.extra["bootstrap"] = reps
    if "bootstrap" not in result.json_extra:  # the paired model-vs-model test reads them back
        result.json_extra = (*result.json_extra, "bootstrap")
    result.ci = ci
    result.ci_method = method


def binomial_ci(successes: int, trials: int, level: float = DEFAULT_CI_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a proportion ``successes / trials``."""
    from scipy.stats import beta

    k, n = int(successes), int(trials)
    if n < 1 or not 0 <= k <= n:
        raise UsageError(f"binomial interval needs 0 <= successes <= trials and trials >= 1, got {k}/{n}")
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


def paired_bootstrap_pvalue(estimate_a: float, replicates_a: np.ndarray, estimate_b: float,
                            replicates_b: np.ndarray) -> float:
    """Two-sided p-value of H0 "A and B have the same expected value" from paired replicates.

    ``replicates_a[i]`` and ``replicates_b[i]`` must come from the same replicate ``i`` (same
    seed, same real set), so that the real set's resampling noise cancels in the difference.
    """
    ra, rb = np.asarray(replicates_a, np.float64), np.asarray(replicates_b, np.float64)
    if ra.shape != rb.shape or ra.ndim != 1:
        raise ValueError(f"paired replicates must have the same length, got {ra.shape} and {rb.shape}")
    d = ra - rb
    d = d[np.isfinite(d)]
    observed = float(estimate_a) - float(estimate_b)
    if d.size == 0 or not math.isfinite(observed):
        return float("nan")
    centred = d - d.mean()
    # A tolerance so that an observed difference of exactly 0 (identical sets) gives p = 1.
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = int(np.count_nonzero(np.abs(centred) >= abs(observed) - tol))
    return (1 + extreme) / (1 + d.size)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count in the family)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    running = 0.0
    for rank, j in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[j]))
        out[j] = running
    return [float(v) for v in out]


@dataclass
class Comparison:
    """One metric's column: the best model, each other model's p-value against it, and whether the
    best is significantly better than the runner-up."""

    metric: str
    best: str | None
    runner_up: str | None
    p: dict[str, float]          # raw two-sided p-value, model -> vs best
    p_holm: dict[str, float]     # Holm-adjusted over the models compared with the best
    significant: bool            # best beats the runner-up at ALPHA after Holm
    alpha: float = ALPHA

    def to_json(self) -> dict[str, Any]:
        return {"best": self.best, "runner_up": self.runner_up, "alpha": self.alpha,
                "correction": "holm", "test": "paired bootstrap (shared real resamples), two-sided",
                "p": self.p, "p_holm": self.p_holm, "significant": self.significant}


def compare_to_best(metric: str, entries: Mapping[str, tuple[float, np.ndarray | None]], direction: int,
                    alpha: float = ALPHA) -> Comparison:
    """Every model against the best one on a metric (``direction`` +1: higher is better).

    ``entries``: model -> (value, bootstrap replicates or None). Models without replicates take
    part in the ranking but get no p-value (NaN), and then no marker can be given.
    """
    ranked = sorted(((v, name) for name, (v, _) in entries.items() if v is not None and math.isfinite(v)),
                    key=lambda t: -direction * t[0])
    if not ranked:
        return Comparison(metric, None, None, {}, {}, False, alpha)
    best = ranked[0][1]
    runner = ranked[1][1] if len(ranked) > 1 else None
    vb, rb = entries[best]
    p: dict[str, float] = {}
    for _, name in ranked[1:]:
        v, r = entries[name]
        if rb is None or r is None or len(rb) != len(r):
            p[name] = float("nan")
        else:
            p[name] = paired_bootstrap_pvalue(vb, rb, v, r)
    names = list(p)
    adj = dict(zip(names, holm([p[n] for n in names])))
    sig = runner is not None and math.isfinite(adj.get(runner, math.nan)) and adj[runner] < alpha \
        and entries[runner][0] != vb
    return Comparison(metric, best, runner, p, adj, bool(sig), alpha)
