"""Statistics of a real-vs-synthetic decision task (human readers or a classifier).

Positive = synthetic. For a confusion table with TP (synthetic called synthetic), FN (synthetic
called real), TN (real called real) and FP (real called synthetic):

- accuracy    = (TP + TN) / n,  sensitivity = TP / (TP + FN),  specificity = TN / (TN + FP);
- each with the exact binomial (Clopper-Pearson) interval, ``genbench.stats.binomial_ci``;
- the two-sided exact binomial test of accuracy against 0.5 (``scipy.stats.binomtest``);
- AUC of ordinal scores (ties count one half: the Mann-Whitney statistic) with DeLong's
  variance (DeLong et al. 1988) and a Wald interval clipped to [0, 1];
- Fleiss' kappa (Fleiss 1971) for several raters who each judged the same items.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "Confusion",
    "Proportion",
    "auc_delong",
    "binomial_p",
    "clopper_pearson",
    "clustered_proportion",
    "fleiss_kappa",
    "proportion",
]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for ``k`` successes in ``n`` trials (NaN when n = 0)."""
    from genbench.stats import binomial_ci

    if n <= 0:
        return (math.nan, math.nan)
    return binomial_ci(k, n, level)


def binomial_p(k: int, n: int, p0: float = 0.5) -> float:
    """Two-sided exact binomial test of ``k`` of ``n`` against rate ``p0``."""
    from scipy.stats import binomtest

    if n <= 0:
        return math.nan
    return float(binomtest(int(k), int(n), p0, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` with its exact interval (``value``/``ci`` are NaN when ``n`` is 0).

    ``n_eff`` is set when the interval accounts for clustered trials (``clustered_proportion``).
    """

    k: int
    n: int
    value: float
    ci: tuple[float, float]
    n_eff: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"value": _finite(self.value), "ci": [_finite(c) for c in self.ci], "k": self.k,
               "n": self.n}
        if self.n_eff is not None:
            out["n_eff"] = _finite(self.n_eff)
        return out


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def clustered_proportion(correct: Any, groups: Any, level: float = 0.95) -> Proportion:
    """Share of successes when trials come in clusters (e.g. slices of one patient).

    Korn & Graubard (1998): the Clopper-Pearson interval computed with the effective sample size
    ``n_eff = n / deff``, design effect ``deff = max(1, var_c / (p (1 - p) / (n - 1)))``, where
    ``var_c = G / (G - 1) * sum_g (k_g - p n_g)^2 / n^2`` is the cluster-robust (ratio-estimator)
    variance over the G clusters; beta quantiles at non-integer ``k = p n_eff`` (no
    degrees-of-freedom correction). With one trial per cluster it is exactly the plain interval.
    """
    from scipy.stats import beta

    c = np.asarray(correct, dtype=np.float64)
    g = np.asarray(groups)
    n = len(c)
    if n == 0:
        return Proportion(0, 0, math.nan, (math.nan, math.nan), math.nan)
    k = round(c.sum())
    p = float(c.mean())
    _, inverse = np.unique(g, return_inverse=True)
    k_g = np.bincount(inverse, weights=c)
    n_g = np.bincount(inverse).astype(np.float64)
    n_clusters = len(k_g)
    if p in (0.0, 1.0) or n_clusters < 2:
        n_eff = float(n) if n_clusters >= 2 else 1.0
    else:
        var = n_clusters / (n_clusters - 1) * float(np.sum((k_g - p * n_g) ** 2)) / n**2
        deff = max(1.0, var / (p * (1 - p) / (n - 1)))
        n_eff = n / deff
    alpha = 1.0 - level
    k_eff = p * n_eff
    lo = 0.0 if k_eff <= 0 else float(beta.ppf(alpha / 2, k_eff, n_eff - k_eff + 1))
    hi = 1.0 if k_eff >= n_eff else float(beta.ppf(1 - alpha / 2, k_eff + 1, n_eff - k_eff))
    return Proportion(k, n, p, (lo, hi), n_eff)


def proportion(k: int, n: int, level: float = 0.95) -> Proportion:
    return Proportion(int(k), int(n), (k / n) if n else math.nan, clopper_pearson(k, n, level))


@dataclass(frozen=True)
class Confusion:
    """Counts of a real/synthetic decision task; positive = synthetic."""

    tp: int  # synthetic called synthetic
    fn: int  # synthetic called real
    tn: int  # real called real
    fp: int  # real called synthetic

    @classmethod
    def from_labels(cls, truth_synthetic: Any, called_synthetic: Any) -> Confusion:
        t = np.asarray(truth_synthetic, dtype=bool)
        c = np.asarray(called_synthetic, dtype=bool)
        if t.shape != c.shape:
            raise ValueError("truth and calls differ in length")
        return cls(tp=int(np.sum(t & c)), fn=int(np.sum(t & ~c)), tn=int(np.sum(~t & ~c)),
                   fp=int(np.sum(~t & c)))

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fn + other.fn, self.tn + other.tn,
                         self.fp + other.fp)

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.tn + self.fp

    def accuracy(self, level: float = 0.95) -> Proportion:
        return proportion(self.tp + self.tn, self.n, level)

    def sensitivity(self, level: float = 0.95) -> Proportion:
        return proportion(self.tp, self.tp + self.fn, level)

    def specificity(self, level: float = 0.95) -> Proportion:
        return proportion(self.tn, self.tn + self.fp, level)

    def p_value(self) -> float:
        """Exact two-sided binomial test of the accuracy against 0.5."""
        return binomial_p(self.tp + self.tn, self.n, 0.5)

    def summary(self, level: float = 0.95) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy(level).to_json(),
            "sensitivity": self.sensitivity(level).to_json(),
            "specificity": self.specificity(level).to_json(),
            "p_value": _finite(self.p_value()),
            "counts": asdict(self),
        }


def auc_delong(truth_positive: Any, scores: Any, level: float = 0.95
               ) -> tuple[float, tuple[float, float], float]:
    """AUC of ``scores`` for positives vs negatives (ties = 1/2), its DeLong CI and standard error.

    The structural components of DeLong et al. (1988): V10_i = mean_j psi(x_i, y_j) over
    negatives for each positive x_i, V01_j likewise; var = s10/m + s01/n with the sample
    variances of those components.
    """
    from scipy.stats import norm

    t = np.asarray(truth_positive, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[t], s[~t]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return math.nan, (math.nan, math.nan), math.nan
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = float(psi.mean())
    v10 = psi.mean(axis=1)
    v01 = psi.mean(axis=0)
    s10 = float(np.var(v10, ddof=1)) if m > 1 else 0.0
    s01 = float(np.var(v01, ddof=1)) if n > 1 else 0.0
    se = math.sqrt(s10 / m + s01 / n)
    z = float(norm.ppf(0.5 + level / 2))
    return auc, (max(0.0, auc - z * se), min(1.0, auc + z * se)), se


def fleiss_kappa(table: Any) -> float:
    """Fleiss' kappa from an items x categories table of counts (every row sums to the raters).

    kappa = (P_bar - P_e) / (1 - P_e), with P_i = (sum_j n_ij^2 - r) / (r (r - 1)),
    P_bar = mean_i P_i, p_j = sum_i n_ij / (N r), P_e = sum_j p_j^2. NaN when P_e = 1 (every
    rating in one category: agreement beyond chance is undefined).
    """
    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("fleiss_kappa needs a non-empty items x categories table")
    r = x.sum(axis=1)
    if not np.all(r == r[0]) or r[0] < 2:
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings for every item")
    r0 = float(r[0])
    p_i = (np.sum(x * x, axis=1) - r0) / (r0 * (r0 - 1.0))
    p_bar = float(p_i.mean())
    p_j = x.sum(axis=0) / (x.shape[0] * r0)
    p_e = float(np.sum(p_j * p_j))
    if math.isclose(p_e, 1.0):
        return math.nan
    return (p_bar - p_e) / (1.0 - p_e)
