"""``genbench run --utility``: per-class generators and the utility stage, on the run's stages.

Per model, under ``<out>/<dataset>/<preset>/<model>/``::

    class-<k>/               one model folder per class k, with the usual stages of
                             ``genbench.run_stages``: training/<id>/ (checkpoints, weights),
                             losses.jsonl, samples/ and samples.npz (class k's images)
    samples.npz, samples/    the pooled fidelity set: from each class, its share of the
                             n samples in proportion to the training set (largest remainder),
                             classes interleaved, the class of every image in the npz's meta
                             (``labels``)
    metrics.json             the usual fidelity metrics of the pooled set
    utility.json             the utility experiment (``genbench.utility.experiment``)

An unconditional model is trained once per class on that class's training images (each
training resumable like any other: the class is part of its data key). A model whose class
attribute ``class_conditional`` is true is trained once, on all training images with their
classes in ``ImageSet.meta["labels"]``, and its ``sample_class`` attribute (an int, or None)
selects the class that ``sample`` draws. Every class draws ``max(training count, fidelity
share)`` images, so the classifier's synthetic set has exactly the real training set's size
and class balance, and the fidelity metrics keep the run's sample size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.errors import GenbenchError, UsageError
from genbench.imageset import ImageSet
from genbench.io.atomic import atomic_write_json
from genbench.stages import StageRecord, StageStore, content_key
from genbench.utility.experiment import Labelled, UtilityConfig, patient_groups, run_utility
from genbench.utility.rundir import CLASS_DIR, PREDICTIONS, class_samples


def is_class_conditional(gen: Any) -> bool:
    return bool(getattr(gen, "class_conditional", False))


def fidelity_shares(train_counts: np.ndarray, n: int) -> np.ndarray:
    """``n`` split over the classes in proportion to ``train_counts`` (largest remainder)."""
    counts = np.asarray(train_counts, dtype=np.float64)
    exact = n * counts / counts.sum()
    out = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - out), kind="stable")[: n - int(out.sum())]:
        out[i] += 1
    return out


def require_labels(data: Any, dataset: str) -> None:
    """A data set asked for --utility must carry classes; else one line naming what is missing."""
    if getattr(data, "classes", None) is None:
        raise UsageError(
            f"--utility needs class labels, and the {dataset} data carry none: use the built-in "
            "chest or abdomen phantom (its finding), --labels folders (DIR/<class>/...) or "
            "--label-finding NAME (ChestX-ray14's Data_Entry_2017.csv)"
        )


def _subset(train: ImageSet, labels: np.ndarray, k: int) -> ImageSet:
    return train.subset(np.flatnonzero(labels == k))


def _pool_images(ctx: Any, name: str, mdir: Path, class_recs: list[StageRecord],
                 shares: np.ndarray, classes: list[str], bit_depth: int) -> StageRecord:
    """``<model>/samples.npz`` (+ PNGs): each class's first ``shares[k]`` images, in class order."""
    from genbench.distributed import current

    key = content_key(stage="sample", pooled=[r.output_hash for r in class_recs],
                      shares=[int(s) for s in shares], classes=classes, bit_depth=bit_depth)
    store = StageStore(mdir)
    if not ctx.say.main:
        # Under torchrun rank 0 pools and writes (as in run_stages.sample_stage); every rank
        # then scores the images its record names.
        current().barrier()
        rec = store.read("sample")
        if rec is None:
            raise GenbenchError(f"{name}: rank 0 did not finish pooling the samples (see its error)")
        return rec
    try:
        return _pool_on_main(ctx, name, mdir, class_recs, shares, classes, bit_depth, key, store)
    finally:
        current().barrier()


def _pool_on_main(ctx: Any, name: str, mdir: Path, class_recs: list[StageRecord],
                  shares: np.ndarray, classes: list[str], bit_depth: int, key: str,
                  store: StageStore) -> StageRecord:
    from genbench.io import write_npz, write_png_folder
    from genbench.run_stages import clear_dir, load_npz_images

    n = int(shares.sum())
    rec = None if ctx.force else store.done("sample", key)
    if rec is not None:
        ctx.say.say(f"{name}: pooled samples done (cached, {n} images)")
        return rec
    store.invalidate("sample")
    t0 = time.time()
    parts, keys = [], []
    for k, share in enumerate(shares):
        x = load_npz_images(mdir / CLASS_DIR.format(k=k) / "samples.npz")[: int(share)]
        parts.append(x)
        keys += [((i + 0.5) / len(x), k) for i in range(len(x))]
    # Classes interleaved in proportion, so that any prefix (a figure's first samples) shows all.
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    images = torch.cat(parts)[order]
    labels = [keys[i][1] for i in order]
    npz = write_npz(images, mdir / "samples.npz", overwrite=True, model=name, seed=ctx.seed,
                    dataset=ctx.dataset, classes=classes, labels=labels)
    clear_dir(mdir / "samples")
    pngs = write_png_folder(images, mdir / "samples", bit_depth=bit_depth, prefix="sample",
                            overwrite=True)
    return store.complete("sample", key, [npz, *pngs], started=t0,
                          info={"n": n, "bit_depth": bit_depth,
                                "per_class": {c: int(s) for c, s in zip(classes, shares)}})


def per_class_stages(ctx: Any, name: str, create: Callable[[], Any], data: Any, data_key: str,
                     n_samples: int, bit_depth: int) -> tuple[StageRecord, StageRecord]:
    """Train and sample per class (or once, conditionally); returns (train summary, pooled sample).

    The train summary is a record over the class trainings (its key hashes theirs), for the
    run's results; the pooled sample record is what the evaluate stage reads.
    """
    from genbench.run_stages import FINAL_WEIGHTS, TRAINING_DIR, sample_stage, train_stage

    classes = list(data.classes)
    labels = np.asarray(data.train_labels)
    counts = np.bincount(labels, minlength=len(classes))
    shares = fidelity_shares(counts, n_samples)
    draws = np.maximum(counts, shares)
    mdir = ctx.root / name
    gen = create()
    train_recs: list[StageRecord] = []
    folders: list[str] = []  # each training's folder, relative to the run
    sample_recs: list[StageRecord] = []
    if is_class_conditional(gen):
        train = ImageSet(data.train.images, data.train.sources, data.train.mapping,
                         {**data.train.meta, "labels": labels})
        rec, _ = train_stage(ctx, name, gen, train, f"{data_key}/labels", mdir)
        gen.load(mdir / TRAINING_DIR / rec.key[:12] / FINAL_WEIGHTS)
        train_recs.append(rec)
        folders.append(ctx.rel(mdir / TRAINING_DIR / rec.key[:12]))
        for k, cls in enumerate(classes):
            gen.sample_class = k
            sample_recs.append(sample_stage(ctx, f"{name} ({cls})", gen, True, int(draws[k]), rec,
                                            mdir / CLASS_DIR.format(k=k), bit_depth))
        gen.sample_class = None
    else:
        for k, cls in enumerate(classes):
            kdir = mdir / CLASS_DIR.format(k=k)
            g = gen if k == 0 else create()
            who = f"{name} ({cls})"
            rec, now = train_stage(ctx, who, g, _subset(data.train, labels, k),
                                   f"{data_key}/class-{k}", kdir)
            train_recs.append(rec)
            folders.append(ctx.rel(kdir / TRAINING_DIR / rec.key[:12]))
            sample_recs.append(sample_stage(ctx, who, g, now, int(draws[k]), rec, kdir, bit_depth))
    pooled = _pool_images(ctx, name, mdir, sample_recs, shares, classes, bit_depth)
    summary = StageRecord(
        name="train",
        key=content_key(per_class=[r.key for r in train_recs]),
        outputs={f"{CLASS_DIR.format(k=k)}/{FINAL_WEIGHTS}" if len(train_recs) > 1 else
                 FINAL_WEIGHTS: r.outputs.get(FINAL_WEIGHTS, "") for k, r in enumerate(train_recs)},
        completed_at=max(r.completed_at for r in train_recs),
        elapsed_s=round(sum(r.elapsed_s for r in train_recs), 3),
        info={"steps": train_recs[0].info.get("steps"),
              "num_parameters": train_recs[0].info.get("num_parameters"),
              "per_class": not is_class_conditional(gen),
              "classes": classes,
              "folders": folders,
              "trainings": [r.info | {"key": r.key} for r in train_recs]},
    )
    return summary, pooled


def utility_stage(ctx: Any, data: Any, models: list[str], cfg: UtilityConfig
                  ) -> dict[str, dict[str, Any]]:
    """The utility experiment for the run's models that have per-class samples.

    Recorded per model as a ``utility`` stage (key: real training set, held-out set, the
    model's per-class samples, the experiment's settings); the classifiers' predictions are
    cached by content under ``<run>/utility/predictions/``, so a rerun, a resumed run or a
    second model trains no classifier twice (``--force`` retrains them all).
    """
    classes = list(data.classes)
    real_train = Labelled(data.train.images, data.train_labels)
    test = Labelled(data.test.images, data.test_labels)
    groups = patient_groups(data.test.sources)
    results: dict[str, dict[str, Any]] = {}
    todo: dict[str, tuple[Labelled, str]] = {}
    real_hashes = {"train": real_train.sha256(), "test": test.sha256()}  # the same for every model
    for name in models:
        mdir = ctx.root / name
        pool = class_samples(mdir, classes)
        if pool is None:
            continue  # the model failed before sampling: reported with its error
        key = content_key(stage="utility", **real_hashes, synthetic=pool.sha256(), classes=classes,
                          settings=cfg.identity())
        if not ctx.force and StageStore(mdir).done("utility", key):
            results[name] = json.loads((mdir / "utility.json").read_text())
            ctx.say.say(f"{name}: utility done (cached)")
        else:
            StageStore(mdir).invalidate("utility")
            todo[name] = (pool, key)
    if todo:
        t0 = time.time()
        new = run_utility(real_train, test, groups, classes, {m: p for m, (p, _) in todo.items()},
                          cfg, cache_dir=ctx.root / PREDICTIONS, reuse=not ctx.force,
                          say=ctx.say.say, progress=ctx.say.progress)
        for name, res in new.items():
            out = atomic_write_json(ctx.root / name / "utility.json", res)
            StageStore(ctx.root / name).complete("utility", todo[name][1], [out], started=t0)
            acc = res["conditions"]
            ctx.say.say(f"{name}: utility accuracy real {acc['real']['accuracy']['value']:.3f}, "
                        f"synthetic {acc['synthetic']['accuracy']['value']:.3f}, "
                        f"real + synthetic {acc['mixed']['accuracy']['value']:.3f}")
        results.update(new)
    return {m: results[m] for m in models if m in results}
