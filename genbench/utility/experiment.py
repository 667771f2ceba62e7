"""The utility experiment: is a generator's synthetic data useful for training a classifier?

For every model, one classifier architecture (``ClassifierConfig``) is trained with the same
seeds on

  (a) ``real``: the real training images,
  (b) ``synthetic``: the model's images, as many per class as (a) has (same size and class
      balance), drawn by the model's per-class generators (or its class-conditional sampler),
  (c) ``mixed``: (a) and (b) together,

and tested on the held-out real images (patient-level split, never seen by the generators).
(a) is the same for every model and is trained once per seed. Each trained classifier's test
probabilities are cached under a content key (training images, labels, test images, classifier
config, seed), so a rerun, or a second model, retrains nothing that is already known.
Statistics: ``genbench.utility.stats``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.errors import InputError, UsageError
from genbench.imageset import pixel_sha256
from genbench.io.atomic import atomic_write_bytes
from genbench.progress import ProgressFactory, prefixed
from genbench.stages import content_key
from genbench.utility import stats
from genbench.utility.classifier import ClassifierConfig, train_classifier

SCHEMA = "genbench.utility/1"
CONDITIONS = ("real", "synthetic", "mixed")
COMPARISONS = {"synthetic - real": ("real", "synthetic"), "mixed - real": ("real", "mixed")}
CI_METHOD = (
    "two-level percentile bootstrap: held-out patients and training seeds resampled with "
    "replacement"
)
P_METHOD = (
    "paired approximate randomisation test: predictions of the two conditions swapped per "
    "held-out patient (all seeds), two-sided"
)


@dataclass(frozen=True)
class UtilityConfig:
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    seeds: int = 3
    seed: int = 0  # classifier seeds are seed, seed + 1, ...
    n_boot: int = 2000
    n_perm: int = 9999
    ci_level: float = 0.95

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise UsageError("the utility experiment needs at least one classifier seed")
        if not 0.5 <= self.ci_level < 1.0:
            raise UsageError(f"ci_level must be in [0.5, 1), got {self.ci_level}")
        if self.n_boot < 100 or self.n_perm < 99:
            raise UsageError("use at least 100 bootstrap replicates and 99 permutations")

    def identity(self) -> dict[str, Any]:
        return {"classifier": self.classifier.as_dict(), "seeds": self.seeds, "seed": self.seed,
                "n_boot": self.n_boot, "n_perm": self.n_perm, "ci_level": self.ci_level}


@dataclass
class Labelled:
    """Canonical images (N, 1, H, W) with a class index per image."""

    images: torch.Tensor
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.images.ndim != 4 or self.images.shape[1] != 1:
            raise ValueError(f"expected (N, 1, H, W) images, got {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError("one label per image is required")

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, k: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=k)

    def sha256(self) -> str:
        return pixel_sha256(self.images, self.labels.astype("<i8").tobytes())

    @staticmethod
    def concat(a: Labelled, b: Labelled) -> Labelled:
        return Labelled(torch.cat([a.images.float(), b.images.float()]),
                        np.concatenate([a.labels, b.labels]))


def match_real(real: Labelled, pool: Labelled, classes: list[str], who: str) -> Labelled:
    """From ``pool``, the first images of each class, as many as ``real`` has of it."""
    want = real.counts(len(classes))
    have = pool.counts(len(classes))
    short = [c for c in range(len(classes)) if have[c] < want[c]]
    if short:
        c = short[0]
        raise InputError(
            f"{who}: {have[c]} synthetic image(s) of class {classes[c]!r}, the utility experiment "
            f"needs {want[c]} (the real training count); sample more"
        )
    idx = np.concatenate([np.flatnonzero(pool.labels == c)[: want[c]] for c in range(len(classes))])
    idx.sort()
    return Labelled(pool.images[idx], pool.labels[idx])


def training_sets(real: Labelled, pool: Labelled, classes: list[str], who: str) -> dict[str, Labelled]:
    """The three training sets of one model: real, synthetic (matched to real), both."""
    synth = match_real(real, pool, classes, who)
    return {"real": real, "synthetic": synth, "mixed": Labelled.concat(real, synth)}


def patient_groups(sources: list[str]) -> np.ndarray:
    """Patient index per image from ``ImageSet.sources`` (``"<patient>:<image>"``)."""
    names = [s.split(":", 1)[0] for s in sources]
    _, g = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    return g.astype(np.int64)


class PredictionCache:
    """Test-set probabilities of trained classifiers, one ``<key>.npy`` per training.

    ``reuse=False`` (``--force``) retrains and overwrites instead of reading."""

    def __init__(self, folder: Path | None, reuse: bool = True) -> None:
        self.folder = None if folder is None else Path(folder)
        self.reuse = reuse

    def get(self, key: str) -> np.ndarray | None:
        if self.folder is None or not self.reuse:
            return None
        path = self.folder / f"{key}.npy"
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, probs: np.ndarray) -> None:
        if self.folder is None:
            return
        import io

        buf = io.BytesIO()
        np.save(buf, probs.astype(np.float64))
        atomic_write_bytes(self.folder / f"{key}.npy", buf.getvalue())


Say = Callable[[str], None]


def predictions(
    train: Labelled,
    test: Labelled,
    n_classes: int,
    cfg: UtilityConfig,
    cache: PredictionCache,
    label: str,
    say: Say,
    progress: ProgressFactory | None = None,
) -> tuple[list[np.ndarray], float]:
    """Per-seed test probabilities of classifiers trained on ``train``; returns (probs, seconds)."""
    train_hash, test_hash = train.sha256(), test.sha256()
    out, spent = [], 0.0
    for s in range(cfg.seeds):
        seed = cfg.seed + s
        key = content_key(kind="utility-predictions", version=1, train=train_hash, test=test_hash,
                          classes=n_classes, classifier=cfg.classifier.as_dict(), seed=seed)
        probs = cache.get(key)
        if probs is None or probs.shape != (len(test), n_classes):
            clf = train_classifier(train.images, train.labels, n_classes, cfg.classifier, seed,
                                   prefixed(progress, f"utility: {label} seed {seed}: "))
            probs = clf.predict_proba(test.images)
            cache.put(key, probs)
            spent += clf.seconds
            say(f"{label}: classifier seed {seed} trained on {len(train)} images "
                f"in {clf.seconds:.1f} s")
        out.append(probs)
    return out, spent


def run_utility(
    real_train: Labelled,
    test: Labelled,
    test_groups: np.ndarray,
    classes: list[str],
    synthetic: dict[str, Labelled],
    cfg: UtilityConfig,
    *,
    cache_dir: Path | None = None,
    reuse: bool = True,
    say: Say | None = None,
    progress: ProgressFactory | None = None,
) -> dict[str, dict[str, Any]]:
    """The experiment for every model in ``synthetic`` (name -> per-class pool); one result each."""
    say = say or (lambda _m: None)
    k = len(classes)
    if k < 2:
        raise InputError(f"the utility experiment needs at least two classes, got {classes}")
    for part, data in (("training", real_train), ("held-out", test)):
        counts = data.counts(k)
        if (counts == 0).any():
            missing = [classes[c] for c in range(k) if counts[c] == 0]
            raise InputError(f"the real {part} set has no image of class {missing[0]!r}")
    cache = PredictionCache(cache_dir, reuse)
    resampler = stats.Resampler(test_groups, cfg.seeds, cfg.n_boot, cfg.seed)
    t0 = time.time()
    real_preds, real_s = predictions(real_train, test, k, cfg, cache, "real", say, progress)
    real_summary = stats.summarise(real_preds, test.labels, resampler, cfg.ci_level)
    results = {}
    for name, pool in synthetic.items():
        t1 = time.time()
        sets = training_sets(real_train, pool, classes, name)
        preds = {"real": real_preds}
        seconds = {"real": real_s}
        for c in ("synthetic", "mixed"):
            preds[c], seconds[c] = predictions(sets[c], test, k, cfg, cache, f"{name} {c}", say,
                                               progress)
        conditions = {"real": real_summary}
        for c in ("synthetic", "mixed"):
            conditions[c] = stats.summarise(preds[c], test.labels, resampler, cfg.ci_level)
        comparisons = {
            label: stats.paired_test(preds[a], preds[b], test.labels, test_groups, resampler,
                                     cfg.ci_level, cfg.n_perm, cfg.seed)
            for label, (a, b) in COMPARISONS.items()
        }
        sizes = {c: sets[c].counts(k) for c in CONDITIONS} | {"test": test.counts(k)}
        results[name] = {
            "schema": SCHEMA,
            "model": name,
            "classes": list(classes),
            "positive": classes[1] if k == 2 else None,
            "n": {part: {classes[c]: int(v[c]) for c in range(k)} for part, v in sizes.items()},
            "n_test_patients": len(np.unique(test_groups)),
            "classifier": cfg.classifier.as_dict(),
            "seeds": [cfg.seed + s for s in range(cfg.seeds)],
            "ci_level": cfg.ci_level,
            "ci_method": CI_METHOD,
            "n_boot": cfg.n_boot,
            "p_value_method": P_METHOD,
            "n_perm": cfg.n_perm,
            "conditions": conditions,
            "comparisons": comparisons,
            "train_sha256": {c: sets[c].sha256() for c in CONDITIONS},
            "test_sha256": test.sha256(),
            "train_seconds": {c: round(v, 2) for c, v in seconds.items()},
            "elapsed_s": round(time.time() - t1, 2),
        }
    say(f"utility: {len(synthetic)} model(s) in {time.time() - t0:.1f} s")
    return results
