"""Classification metrics, their confidence intervals and the paired comparison of conditions.

Metrics on the held-out real set (``y`` class indices, ``P`` class probabilities, prediction =
argmax; for two classes, class 1 -- the finding -- is *positive*):

* accuracy = share of images whose prediction equals the label;
* AUC = area under the ROC curve of P[:, 1] (two classes), or the unweighted mean of the
  one-vs-rest AUCs (more classes), ties counted one half (the Mann-Whitney statistic; equals
  ``sklearn.metrics.roc_auc_score``);
* sensitivity = positives predicted positive / positives, specificity = negatives predicted
  negative / negatives (two classes only; ``None`` otherwise).

A condition is trained with several seeds; its value is the mean over seeds of the per-seed
metric.

Confidence interval (``bootstrap_ci``): a two-level percentile bootstrap. Each replicate draws
the held-out *patients* with replacement (images of one patient move together: they are not
independent) and, independently, the training seeds with replacement; the replicate's value is
the seed-weighted mean of the image-weighted metric. The interval covers both the finite test
set and the spread between training runs. Replicates in which a class is absent (AUC,
sensitivity or specificity undefined) are dropped and counted.

Paired comparison (``paired_test``) of condition B against A (same test images, same seeds):
the difference of their values, its CI from the same two-level bootstrap applied to both at
once, and a two-sided p-value from an approximate randomisation test: under the null that the
two training sets are exchangeable, swapping A's and B's predictions for all images of a
patient (in every seed) leaves the distribution of the difference unchanged. ``n_perm``
random swaps give p = (1 + #{|diff*| >= |diff|}) / (1 + n_perm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

METRICS = ("accuracy", "auc", "sensitivity", "specificity")
PERM_CHUNK = 1000


def _onehot_positive(y: np.ndarray, k: int) -> list[np.ndarray]:
    return [y == c for c in range(k)]


# ----------------------------------------------------------------------------- AUC engines


def weighted_auc(score: np.ndarray, positive: np.ndarray, W: np.ndarray) -> np.ndarray:
    """AUC of one score vector under many image weightings ``W`` (B, n): (B,), NaN if undefined.

    AUC = sum_{i pos, j neg} w_i w_j ([s_j < s_i] + [s_j == s_i] / 2) / (W_pos W_neg).
    Sorting once and summing negative weight per tie group makes it O(B n).
    """
    order = np.argsort(score, kind="stable")
    s = score[order]
    pos = positive[order]
    Wo = W[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    neg_g = np.add.reduceat(Wo * (~pos), starts, axis=1)  # (B, G)
    below = np.cumsum(neg_g, axis=1) - neg_g
    credit = below + 0.5 * neg_g
    wp = Wo * pos
    num = (wp * credit[:, group]).sum(axis=1)
    den = wp.sum(axis=1) * (Wo * (~pos)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def rank_auc_rows(S: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUC of each row of scores ``S`` (R, n) against fixed labels (unweighted, average ties)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(len(S), np.nan)
    ranks = rankdata(S, axis=1)
    return (ranks[:, positive].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


# ----------------------------------------------------------------------------- metrics


def metrics_weighted(P: np.ndarray, y: np.ndarray, W: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric of predictions ``P`` (n, k) under image weightings ``W`` (B, n): (B,) arrays."""
    k = P.shape[1]
    pred = P.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    tot = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"accuracy": (W * correct).sum(axis=1) / tot}
        if k == 2:
            pos = y == 1
            out["auc"] = weighted_auc(P[:, 1], pos, W)
            wp, wn = (W * pos).sum(axis=1), (W * ~pos).sum(axis=1)
            out["sensitivity"] = np.where(wp > 0, (W * (correct * pos)).sum(axis=1) / wp, np.nan)
            out["specificity"] = np.where(wn > 0, (W * (correct * ~pos)).sum(axis=1) / wn, np.nan)
        else:
            aucs = [weighted_auc(P[:, c], y == c, W) for c in range(k)]
            out["auc"] = np.mean(aucs, axis=0)
            out["sensitivity"] = np.full(len(W), np.nan)
            out["specificity"] = np.full(len(W), np.nan)
    return out


def metrics(P: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """The metrics of one prediction set (every image weighted 1)."""
    got = metrics_weighted(P, y, np.ones((1, len(y))))
    return {m: (None if np.isnan(v[0]) else float(v[0])) for m, v in got.items()}


# ----------------------------------------------------------------------------- resampling


@dataclass
class Resampler:
    """Two-level bootstrap weights: patients (image weights) and seeds (seed weights)."""

    groups: np.ndarray  # (n,) patient index per held-out image
    n_seeds: int
    n_boot: int = 2000
    seed: int = 0
    image_w: np.ndarray = field(init=False)
    seed_w: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0x5EED])
        _, g = np.unique(self.groups, return_inverse=True)
        n_groups = int(g.max()) + 1
        draws = rng.integers(0, n_groups, size=(self.n_boot, n_groups))
        counts = np.zeros((self.n_boot, n_groups))
        np.add.at(counts, (np.arange(self.n_boot)[:, None], draws), 1.0)
        self.image_w = counts[:, g]
        sd = rng.integers(0, self.n_seeds, size=(self.n_boot, self.n_seeds))
        sw = np.zeros((self.n_boot, self.n_seeds))
        np.add.at(sw, (np.arange(self.n_boot)[:, None], sd), 1.0)
        self.seed_w = sw / self.n_seeds

    def replicates(self, preds: list[np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
        """Bootstrap replicates (n_boot,) of each seed-averaged metric."""
        per_seed = [metrics_weighted(P, y, self.image_w) for P in preds]
        return {
            m: (np.stack([d[m] for d in per_seed], axis=1) * self.seed_w).sum(axis=1)
            for m in METRICS
        }


def _interval(reps: np.ndarray, level: float) -> tuple[list[float] | None, int]:
    ok = reps[np.isfinite(reps)]
    dropped = int(len(reps) - len(ok))
    if len(ok) < 0.5 * len(reps) or len(ok) < 10:
        return None, dropped
    a = (1.0 - level) / 2.0
    return [float(np.quantile(ok, a)), float(np.quantile(ok, 1.0 - a))], dropped


def summarise(
    preds: list[np.ndarray], y: np.ndarray, resampler: Resampler, level: float
) -> dict[str, dict[str, Any]]:
    """Value (mean over seeds), per-seed values, std over seeds and CI of every metric."""
    per_seed = [metrics(P, y) for P in preds]
    reps = resampler.replicates(preds, y)
    out: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        vals = [d[m] for d in per_seed]
        if any(v is None for v in vals):
            out[m] = {"value": None, "ci": None, "per_seed": vals, "std": None,
                      "reason": "undefined (needs two classes, each present in the test set)"}
            continue
        ci, dropped = _interval(reps[m], level)
        out[m] = {
            "value": float(np.mean(vals)),
            "ci": ci,
            "per_seed": [float(v) for v in vals],
            "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
            "boot_dropped": dropped,
        }
    return out


def paired_test(
    preds_a: list[np.ndarray],
    preds_b: list[np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    resampler: Resampler,
    level: float,
    n_perm: int = 9999,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """B minus A for every metric: difference, bootstrap CI and randomisation p-value."""
    if len(preds_a) != len(preds_b):
        raise ValueError("paired conditions need the same seeds")
    ra, rb = resampler.replicates(preds_a, y), resampler.replicates(preds_b, y)
    va = [metrics(P, y) for P in preds_a]
    vb = [metrics(P, y) for P in preds_b]
    _, g = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng([seed, 0xD1FF])
    parts = []
    for start in range(0, n_perm, PERM_CHUNK):  # bounded memory: (chunk, n) arrays
        rows = min(PERM_CHUNK, n_perm - start)
        swap = rng.integers(0, 2, size=(rows, int(g.max()) + 1)).astype(bool)[:, g]
        parts.append(_permuted_differences(preds_a, preds_b, y, swap))
    perm = {m: np.concatenate([p[m] for p in parts]) for m in METRICS}
    out: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        if any(d[m] is None for d in va + vb):
            out[m] = {"diff": None, "ci": None, "p_value": None}
            continue
        diff = float(np.mean([d[m] for d in vb]) - np.mean([d[m] for d in va]))
        ci, _ = _interval(rb[m] - ra[m], level)
        null = perm[m]
        null = null[np.isfinite(null)]
        # A tolerance keeps exact ties (e.g. diff 0 by construction) from being split by rounding.
        extreme = int((np.abs(null) >= abs(diff) - 1e-12).sum())
        out[m] = {"diff": diff, "ci": ci, "p_value": (1 + extreme) / (1 + len(null)),
                  "n_perm": len(null)}
    return out


def _permuted_differences(
    preds_a: list[np.ndarray], preds_b: list[np.ndarray], y: np.ndarray, swap: np.ndarray
) -> dict[str, np.ndarray]:
    """Seed-averaged B - A of each metric after swapping the two conditions where ``swap``."""
    k = preds_a[0].shape[1]
    acc = {m: np.zeros(len(swap)) for m in METRICS}
    for Pa, Pb in zip(preds_a, preds_b):
        ca = (Pa.argmax(axis=1) == y).astype(np.float64)
        cb = (Pb.argmax(axis=1) == y).astype(np.float64)
        A = np.where(swap, cb, ca)  # (R, n) correctness of the relabelled conditions
        B = np.where(swap, ca, cb)
        acc["accuracy"] += B.mean(axis=1) - A.mean(axis=1)
        if k == 2:
            pos = y == 1
            acc["sensitivity"] += B[:, pos].mean(axis=1) - A[:, pos].mean(axis=1)
            acc["specificity"] += B[:, ~pos].mean(axis=1) - A[:, ~pos].mean(axis=1)
            sa = np.where(swap, Pb[:, 1], Pa[:, 1])
            sb = np.where(swap, Pa[:, 1], Pb[:, 1])
            acc["auc"] += rank_auc_rows(sb, pos) - rank_auc_rows(sa, pos)
        else:
            d = np.zeros(len(swap))
            for c in range(k):
                sa = np.where(swap, Pb[:, c], Pa[:, c])
                sb = np.where(swap, Pa[:, c], Pb[:, c])
                d += rank_auc_rows(sb, y == c) - rank_auc_rows(sa, y == c)
            acc["auc"] += d / k
            acc["sensitivity"][:] = np.nan
            acc["specificity"][:] = np.nan
    return {m: v / len(preds_a) for m, v in acc.items()}
