"""Precision, recall, density and coverage (Naeem et al. 2020) on any feature space.

Definitions as the ``prdc`` package computes them (k = 5 by default), with ``r_k(x)`` the
distance from a point to its k-th nearest neighbour within its own set (the point itself
excluded), real set R (n points), synthetic set S (m points), strict inequalities:

- precision = (1/m) sum_j [ exists i: |r_i - s_j| < r_k(r_i) ]
- recall    = (1/n) sum_i [ exists j: |r_i - s_j| < r_k(s_j) ]
- density   = (1/(k m)) sum_j sum_i [ |r_i - s_j| < r_k(r_i) ]
- coverage  = (1/n) sum_i [ min_j |r_i - s_j| < r_k(r_i) ]

Density counts how many real neighbourhoods contain each synthetic sample (unbounded above,
1 on average when S is distributed like R), so a few synthetic outliers barely move it, and
coverage asks whether each real sample has a synthetic one nearby, which isolated real
outliers cannot inflate: the two fix precision's and recall's sensitivity to outliers.
Distances are Euclidean in float64, computed block by block so memory stays O(n + m) rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genbench.errors import GenbenchError

__all__ = ["PRDC", "PRDCTerms", "knn_radii", "mean_replicates", "prdc", "prdc_terms"]

NEAREST_K = 5
BLOCK = 2048


class PRDCInputError(GenbenchError):
    """Too few samples for the k-nearest-neighbour balls."""


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float
    k: int

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "density": self.density,
                "coverage": self.coverage}


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # |a|^2 + |b|^2 - 2ab in float64: relative error ~1e-12 of the squared norms, far below any
    # distance gap that decides a strict comparison between independent samples.
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return sq.clamp_min_(0.0).sqrt_()


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the k+1-th smallest incl. itself)."""
    out = torch.empty(len(x), dtype=torch.float64)
    for s in range(0, len(x), BLOCK):
        d = _dist(x[s:s + BLOCK], x)
        out[s:s + BLOCK] = d.kthvalue(k + 1, dim=1).values
    return out


@dataclass(frozen=True)
class PRDCTerms:
    """Per-image terms: for each synthetic image how many real k-NN balls contain it (precision:
    > 0; density: / k), for each real image whether a synthetic ball contains it (recall) and
    whether its own ball contains a synthetic image (coverage)."""

    in_real_balls: np.ndarray  # (m,) float64 counts
    recalled: np.ndarray  # (n,) bool
    covered: np.ndarray  # (n,) bool
    k: int

    def summary(self) -> PRDC:
        return PRDC(precision=float((self.in_real_balls > 0).mean()), recall=float(self.recalled.mean()),
                    density=float(self.in_real_balls.mean() / self.k), coverage=float(self.covered.mean()),
                    k=self.k)


def prdc_terms(real: np.ndarray, synth: np.ndarray, k: int = NEAREST_K) -> PRDCTerms:
    """The per-image terms of precision, recall, density and coverage (see :class:`PRDCTerms`)."""
    r = torch.from_numpy(np.ascontiguousarray(real, dtype=np.float64))
    s = torch.from_numpy(np.ascontiguousarray(synth, dtype=np.float64))
    if r.ndim != 2 or s.ndim != 2 or r.shape[1] != s.shape[1]:
        raise ValueError(f"prdc needs two (n, d) feature matrices of equal d, got {tuple(r.shape)} "
                         f"and {tuple(s.shape)}")
    if len(r) <= k or len(s) <= k:
        raise PRDCInputError(f"density/coverage need more than k={k} images per set, got {len(r)} "
                             f"real and {len(s)} synthetic")
    rad_r = knn_radii(r, k)
    rad_s = knn_radii(s, k)
    in_real_balls = torch.zeros(len(s), dtype=torch.float64)
    recalled = torch.zeros(len(r), dtype=torch.bool)
    covered = torch.zeros(len(r), dtype=torch.bool)
    for a in range(0, len(r), BLOCK):
        d = _dist(r[a:a + BLOCK], s)  # (block of real, m)
        in_real_balls += (d < rad_r[a:a + BLOCK, None]).sum(0)
        recalled[a:a + BLOCK] = (d < rad_s[None, :]).any(1)
        covered[a:a + BLOCK] = d.min(1).values < rad_r[a:a + BLOCK]
    return PRDCTerms(in_real_balls.numpy(), recalled.numpy(), covered.numpy(), k)


def prdc(real: np.ndarray, synth: np.ndarray, k: int = NEAREST_K) -> PRDC:
    """Precision, recall, density and coverage of SYNTH against REAL (rows are samples)."""
    return prdc_terms(real, synth, k).summary()


def mean_replicates(values: np.ndarray, boot: object, stream: int) -> np.ndarray:
    """Bootstrap replicates of the mean of per-image ``values`` resampled on ``stream`` (the
    other set's k-NN balls held fixed, as for Inception precision/recall)."""
    from genbench.stats import counts

    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    out = np.empty(boot.replicates)  # type: ignore[attr-defined]
    for start in range(0, boot.replicates, 256):  # type: ignore[attr-defined]
        stop = min(boot.replicates, start + 256)  # type: ignore[attr-defined]
        c = counts(boot.indices(n, stream, start, stop), n).astype(np.float64)  # type: ignore[attr-defined]
        out[start:stop] = c @ v / n
    return out
