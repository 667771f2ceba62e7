"""Validity study: which metric sees which defect, and how strongly.

On a phantom, three disjoint real sets are drawn by patient: REAL (the held-out set every
metric compares against), POOL (fresh real images: what a perfect generator could produce) and
FIT (the "training set" of the imagined generator; train-family metrics such as memorisation
compare against it). The clean synthetic set is ``n`` random POOL images: it is the size-matched
real-vs-real floor. Every defect degrades that set at graded severities (severity 0 is the clean
set itself); every metric is computed with its bootstrap CI, and the degraded set is compared
with the clean one by the paired bootstrap test of ``genbench.stats`` (both are scored against
the same REAL, so the real set's resampling noise cancels). A metric *sees* a defect at a
severity when the degraded value is worse than the clean one in the metric's direction with a
Holm-adjusted p < 0.05 (adjusted over that defect's severities).

Defects (``DEFECTS``): Gaussian pixel noise, Gaussian blur, mode dropping (images from a
fraction of the POOL patients only), duplication (k distinct images repeated), memorisation
(a fraction of the images are FIT images plus faint noise), intensity shift and intensity
inversion (a fraction of the images inverted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.imageset import ImageSet

__all__ = ["DEFECTS", "Defect", "StudySets", "apply_defect", "make_sets"]

MEMORISATION_NOISE = 0.01  # std of the noise on copied training images, canonical [-1, 1] units


@dataclass
class StudySets:
    """The three disjoint real sets of one phantom, and the clean synthetic stand-in."""

    modality: str
    real: ImageSet      # held-out, n images
    clean: ImageSet     # n POOL images: the size-matched floor / severity 0
    pool: ImageSet      # all POOL images (mode dropping draws from them)
    fit: ImageSet       # the imagined generator's training set
    meta: dict[str, Any] = field(default_factory=dict)


def patient_of(source: str) -> str:
    """'phantom-0012:s3' -> 'phantom-0012' (the loaders' and phantoms' source convention)."""
    return source.split(":", 1)[0]


def make_sets(modality: str, *, n: int, size: int, seed: int = 0, fit_fraction: float = 0.1) -> StudySets:
    """REAL/POOL/FIT for one phantom preset: enough POOL slices (about 9 n) that mode dropping
    down to an eighth of the patients still leaves n distinct images."""
    from genbench.data.prepare import prepare_dataset

    total = int(math.ceil(12 * n))
    prepared = prepare_dataset(modality, size=size, n=total, seed=seed, test_fraction=0.1, use_cache=False)
    rng = np.random.default_rng(seed)
    test, train = prepared.test, prepared.train
    if len(test) < n:
        raise UsageError(f"validity: the {modality} phantom's held-out split has {len(test)} < n={n} images")
    real = test.subset(np.sort(rng.choice(len(test), n, replace=False)))
    patients = sorted({patient_of(s) for s in train.sources})
    order = rng.permutation(len(patients))
    n_fit = max(1, int(round(fit_fraction * len(patients))))
    fit_ids = {patients[i] for i in order[:n_fit]}
    is_fit = np.array([patient_of(s) in fit_ids for s in train.sources])
    fit, pool = train.subset(np.flatnonzero(is_fit)), train.subset(np.flatnonzero(~is_fit))
    if len(pool) < n:
        raise UsageError(f"validity: only {len(pool)} pool images for n={n}")
    clean = pool.subset(np.sort(rng.choice(len(pool), n, replace=False)))
    meta = {"modality": modality, "n": n, "size": size, "seed": seed, "n_pool": len(pool), "n_fit": len(fit),
            "n_pool_patients": len(patients) - n_fit, "n_fit_patients": n_fit,
            "description": prepared.description}
    return StudySets(modality, real, clean, pool, fit, meta)


# ---------------------------------------------------------------------------------------------
# Defects: (sets, severity, rng) -> ImageSet of n images. Severity 0 is always the clean set.


def _noise(sets: StudySets, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    x = sets.clean.images
    noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
    return (x + sigma * noise).clamp(-1.0, 1.0)


def _blur(sets: StudySets, sigma_px: float, rng: np.random.Generator) -> torch.Tensor:
    from scipy.ndimage import gaussian_filter

    x = sets.clean.images.numpy()
    if sigma_px == 0:
        return sets.clean.images
    return torch.from_numpy(gaussian_filter(x, (0, 0, sigma_px, sigma_px), mode="nearest").astype(np.float32))


def _mode_drop(sets: StudySets, dropped: float, rng: np.random.Generator) -> torch.Tensor:
    if dropped == 0:
        return sets.clean.images
    pids = np.array([patient_of(s) for s in sets.pool.sources])
    patients = np.unique(pids)
    keep = rng.choice(patients, max(1, int(round((1.0 - dropped) * len(patients)))), replace=False)
    rows = np.flatnonzero(np.isin(pids, keep))
    n = len(sets.clean)
    # Without replacement while the kept patients have enough slices (make_sets sizes the pool so
    # that they do down to an eighth); beyond that the set also contains duplicates.
    pick = rng.choice(rows, n, replace=len(rows) < n)
    return sets.pool.images[torch.from_numpy(np.sort(pick))]


def _duplicate(sets: StudySets, share: float, rng: np.random.Generator) -> torch.Tensor:
    n = len(sets.clean)
    distinct = max(1, int(round((1.0 - share) * n)))
    if distinct >= n:
        return sets.clean.images
    base = rng.choice(n, distinct, replace=False)
    rows = np.concatenate([base, rng.choice(base, n - distinct, replace=True)])
    return sets.clean.images[torch.from_numpy(np.sort(rows))]


def _memorise(sets: StudySets, share: float, rng: np.random.Generator) -> torch.Tensor:
    n = len(sets.clean)
    k = int(round(share * n))
    if k == 0:
        return sets.clean.images
    x = sets.clean.images.clone()
    rows = rng.choice(n, k, replace=False)
    src = rng.choice(len(sets.fit), k, replace=len(sets.fit) < k)
    noise = torch.from_numpy(rng.standard_normal((k, *x.shape[1:])).astype(np.float32))
    x[torch.from_numpy(rows)] = (sets.fit.images[torch.from_numpy(src)] + MEMORISATION_NOISE * noise).clamp(-1, 1)
    return x


def _shift(sets: StudySets, delta: float, rng: np.random.Generator) -> torch.Tensor:
    return (sets.clean.images + delta).clamp(-1.0, 1.0)


def _invert(sets: StudySets, share: float, rng: np.random.Generator) -> torch.Tensor:
    n = len(sets.clean)
    k = int(round(share * n))
    x = sets.clean.images.clone()
    if k:
        rows = torch.from_numpy(rng.choice(n, k, replace=False))
        x[rows] = -x[rows]
    return x


@dataclass(frozen=True)
class Defect:
    name: str
    title: str
    severity: str  # what the severity number means
    levels: tuple[float, ...]  # graded, increasing; 0 (the clean set) is implied
    apply: Callable[[StudySets, float, np.random.Generator], torch.Tensor]


DEFECTS: dict[str, Defect] = {d.name: d for d in (
    Defect("noise", "Gaussian noise", "noise std (canonical [-1, 1] units)", (0.02, 0.05, 0.1, 0.2, 0.4), _noise),
    Defect("blur", "Gaussian blur", "blur sigma (pixels)", (0.5, 1.0, 1.5, 2.5), _blur),
    Defect("mode-drop", "Mode dropping", "share of patients dropped", (0.5, 0.75, 0.875), _mode_drop),
    Defect("duplication", "Duplication", "share of images that repeat another", (0.5, 0.75, 0.875, 0.97), _duplicate),
    Defect("memorisation", "Memorisation", "share of images that are training images + faint noise",
           (0.1, 0.25, 0.5, 1.0), _memorise),
    Defect("shift", "Intensity shift", "added intensity (canonical units)", (0.05, 0.1, 0.2, 0.4), _shift),
    Defect("inversion", "Intensity inversion", "share of images inverted", (0.1, 0.25, 0.5, 1.0), _invert),
)}


def apply_defect(sets: StudySets, defect: str, severity: float, seed: int = 0) -> ImageSet:
    """The clean set degraded by ``defect`` at ``severity`` (0: the clean set), reproducibly."""
    if defect not in DEFECTS:
        raise UsageError(f"unknown defect {defect!r}; known: {', '.join(DEFECTS)}")
    d = DEFECTS[defect]
    rng = np.random.default_rng([seed, list(DEFECTS).index(defect), int(round(severity * 1e6))])
    x = sets.clean.images if severity == 0 else d.apply(sets, float(severity), rng)
    return ImageSet(images=x, mapping=sets.clean.mapping,
                    meta={"defect": defect, "severity": float(severity), "modality": sets.modality})


def severities(defect: str, levels: Sequence[float] | None = None) -> tuple[float, ...]:
    return (0.0, *(DEFECTS[defect].levels if levels is None else levels))


# ---------------------------------------------------------------------------------------------
# The study.


@dataclass
class Cell:
    """One metric at one (modality, defect, severity)."""

    modality: str
    defect: str
    severity: float
    metric: str
    status: str
    value: float | None
    ci: tuple[float, float] | None
    p: float | None = None        # paired test against the clean set (severity 0)
    p_holm: float | None = None   # Holm over the defect's severities
    sees: bool = False            # worse than clean, p_holm < alpha
    reason: str | None = None     # why a metric could not run

    def to_json(self) -> dict[str, Any]:
        return {"modality": self.modality, "defect": self.defect, "severity": self.severity,
                "metric": self.metric, "status": self.status, "value": self.value,
                "ci": None if self.ci is None else list(self.ci), "p": self.p, "p_holm": self.p_holm,
                "sees": self.sees, "reason": self.reason}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Cell:
        ci = obj.get("ci")
        return cls(obj["modality"], obj["defect"], obj["severity"], obj["metric"], obj["status"], obj["value"],
                   None if ci is None else (ci[0], ci[1]), obj.get("p"), obj.get("p_holm"), bool(obj.get("sees")),
                   obj.get("reason"))


def score_defects(sets: StudySets, options: Any, defects: Sequence[str] | None = None,
                  levels: dict[str, Sequence[float]] | None = None, seed: int = 0,
                  say: Callable[[str], None] | None = None) -> list[Cell]:
    """Every requested metric (``options``: EvalOptions, bootstrap on) on the clean set and on
    every defect level of one phantom's sets."""
    from genbench.metrics.pipeline import PreparedReal
    from genbench.metrics.registry import REGISTRY
    from genbench.stats import ALPHA, holm, paired_bootstrap_pvalue

    say = say or (lambda _m: None)
    prepared = PreparedReal(real=sets.real, options=options, train=sets.fit)
    clean = prepared.evaluate(sets.clean).requested()
    say(f"{sets.modality}: clean set scored")
    cells: list[Cell] = []
    for name, res in clean.items():
        cells.append(Cell(sets.modality, "clean", 0.0, name, res.status, res.value, res.ci, reason=res.reason))
    for defect in defects or list(DEFECTS):
        per_level: dict[float, dict[str, Any]] = {}
        for sev in severities(defect, None if levels is None else levels.get(defect))[1:]:
            per_level[sev] = prepared.evaluate(apply_defect(sets, defect, sev, seed=seed)).requested()
            say(f"{sets.modality}: {defect} {sev:g} scored")
        for name, c in clean.items():
            direction = REGISTRY.direction(name)
            ps: list[float] = []
            for sev, results in per_level.items():
                r = results[name]
                p = float("nan")
                if r.status == "ok" and c.status == "ok" and "bootstrap" in r.extra and "bootstrap" in c.extra:
                    p = paired_bootstrap_pvalue(r.value, r.extra["bootstrap"], c.value, c.extra["bootstrap"])
                ps.append(p)
            adjusted = holm(ps)
            for (sev, results), p, pa in zip(per_level.items(), ps, adjusted):
                r = results[name]
                worse = r.status == "ok" and c.status == "ok" and direction * (r.value - c.value) < 0
                ok_p = not math.isnan(p)
                cells.append(Cell(sets.modality, defect, sev, name, r.status, r.value, r.ci,
                                  p if ok_p else None, pa if ok_p else None,
                                  bool(worse and ok_p and pa < ALPHA), r.reason))
    return cells


def detection(cells: Sequence[Cell]) -> dict[str, dict[str, dict[str, Any]]]:
    """metric -> defect -> {"modalities": how many phantoms it sees the defect on (at any level),
    "of": phantoms scored, "lowest": {modality: lowest severity seen or None}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in cells:
        if c.defect == "clean":
            continue
        entry = out.setdefault(c.metric, {}).setdefault(c.defect, {"lowest": {}, "scored": set()})
        if c.status == "ok":
            entry["scored"].add(c.modality)
        low = entry["lowest"].get(c.modality)
        if c.sees and (low is None or c.severity < low):
            entry["lowest"][c.modality] = c.severity
        else:
            entry["lowest"].setdefault(c.modality, low)
    for per_defect in out.values():
        for entry in per_defect.values():
            entry["of"] = len(entry.pop("scored"))
            entry["modalities"] = sum(v is not None for v in entry["lowest"].values())
    return out


def monotone_response(cells: Sequence[Cell], metric: str, defect: str, modality: str) -> bool:
    """Does the metric get worse (in its direction) at every step up in severity, clean included?"""
    from genbench.metrics.registry import REGISTRY

    direction = REGISTRY.direction(metric)
    pts = sorted((c.severity, c.value) for c in cells
                 if c.metric == metric and c.modality == modality and c.status == "ok"
                 and (c.defect == defect or c.defect == "clean"))
    vals = [v for _, v in pts]
    return all(direction * (b - a) < 0 for a, b in zip(vals, vals[1:]))
