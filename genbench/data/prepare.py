"""``prepare_dataset``: a preset's images as canonical train/test ImageSets, split by patient.

Without ``data_dir`` the built-in phantom is used; with it, the real-format loader. Prepared
real data sets are cached (see ``cache.py``); phantoms only when ``cache_dir`` is given,
since generating them takes about as long as reading a cache.

Class labels (``options["labels"]``): ``"phantom"`` draws the phantom's finding
(``genbench.data.phantoms.FINDINGS``; ``prevalence`` and ``finding_strength`` tune it),
``"folders"`` and ``"csv"`` (with ``label_finding``) read them from real data (see
``loaders.discover_labelled``). A labelled data set carries ``classes`` and one label per
image in ``train_labels`` / ``test_labels``; the patient-level split is the same as without
labels, and every class must keep ``MIN_PER_CLASS`` images on each side of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genbench.data import cache
from genbench.data.loaders import discover, discover_labelled, load_case
from genbench.data.phantoms import generate_labelled_phantoms, generate_phantoms
from genbench.data.presets import Preset, get_preset
from genbench.errors import InputError, UsageError
from genbench.imageset import ImageSet, IntensityMapping

PREP_VERSION = 1  # bump when preprocessing changes, so caches are rebuilt
MIN_PER_CLASS = 2  # images per class in each of train and held-out (sensitivity needs positives)
PHANTOM_LABEL_DEFAULTS = {"prevalence": 0.5, "finding_strength": 1.0}


@dataclass
class PreparedDataset:
    train: ImageSet
    test: ImageSet
    description: str
    source: str  # "phantom" | "real"
    fingerprint: str
    mapping: IntensityMapping
    split: dict[str, Any]
    preset: str
    params: dict[str, Any] = field(default_factory=dict)
    cache_path: Path | None = None
    from_cache: bool = False
    elapsed_s: float = 0.0
    classes: list[str] | None = None  # class names (label k = classes[k]) when labelled
    train_labels: np.ndarray | None = None  # (n_train,) int64
    test_labels: np.ndarray | None = None  # (n_test,) int64

    @property
    def labelled(self) -> bool:
        return self.classes is not None

    def class_counts(self) -> dict[str, dict[str, int]]:
        """``{class: {"train": n, "test": n}}`` for a labelled data set, else ``{}``."""
        if not self.labelled:
            return {}
        k = len(self.classes)
        tr = np.bincount(self.train_labels, minlength=k)
        te = np.bincount(self.test_labels, minlength=k)
        return {c: {"train": int(tr[i]), "test": int(te[i])} for i, c in enumerate(self.classes)}

    def summary(self) -> dict[str, Any]:
        labels = {"classes": self.classes, "class_counts": self.class_counts()} if self.labelled else {}
        return labels | {
            "description": self.description,
            "source": self.source,
            "preset": self.preset,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "size": list(self.train.size) if len(self.train) else None,
            "fingerprint": self.fingerprint,
            "mapping": self.mapping.as_dict(),
            "split": {
                k: v for k, v in self.split.items() if k not in ("train_patients", "test_patients")
            }
            | {
                "n_train_patients": len(self.split["train_patients"]),
                "n_test_patients": len(self.split["test_patients"]),
            },
            "cache": str(self.cache_path) if self.cache_path else None,
            "from_cache": self.from_cache,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def split_patients(
    patients: list[str], *, seed: int, test_fraction: float
) -> tuple[list[str], list[str]]:
    """Deterministic patient-level split: shuffle the sorted unique ids with ``seed``."""
    if not 0.0 < test_fraction < 1.0:
        raise UsageError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ids = sorted(set(patients))
    if len(ids) < 2:
        raise InputError(f"a patient-level split needs at least 2 patients, found {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test = min(len(ids) - 1, max(1, int(round(test_fraction * len(ids)))))
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test


def _split_sets(
    images: np.ndarray,
    sources: list[str],
    patients: list[str],
    mapping: IntensityMapping,
    meta: dict,
    seed: int,
    test_fraction: float,
    labels: np.ndarray | None = None,
) -> tuple[ImageSet, ImageSet, dict, tuple[np.ndarray, np.ndarray] | None]:
    train_ids, test_ids = split_patients(patients, seed=seed, test_fraction=test_fraction)
    test_set = set(test_ids)
    is_test = np.array([p in test_set for p in patients], dtype=bool)
    record = {
        "seed": seed,
        "test_fraction": test_fraction,
        "train_patients": train_ids,
        "test_patients": test_ids,
    }

    def make(mask: np.ndarray, part: str) -> ImageSet:
        idx = np.flatnonzero(mask)
        x = images[idx][:, None] if len(idx) else np.zeros((0, 1) + images.shape[1:], np.float32)
        return ImageSet(
            images=x,
            sources=[sources[i] for i in idx] or [],
            mapping=mapping,
            meta={**meta, "split": part},
        )

    split_labels = None if labels is None else (labels[~is_test], labels[is_test])
    return make(~is_test, "train"), make(is_test, "test"), record, split_labels


def check_class_counts(classes: list[str], train: np.ndarray, test: np.ndarray, where: str) -> None:
    """Every class needs ``MIN_PER_CLASS`` images on each side of the patient split."""
    k = len(classes)
    tr, te = np.bincount(train, minlength=k), np.bincount(test, minlength=k)
    short = [i for i in range(k) if tr[i] < MIN_PER_CLASS or te[i] < MIN_PER_CLASS]
    if short:
        counts = ", ".join(f"{classes[i]!r} {tr[i]} train / {te[i]} held-out" for i in range(k))
        raise InputError(
            f"class {classes[short[0]]!r} has too few images for the patient split (need "
            f">= {MIN_PER_CLASS} on each side): {counts}; add data or change the test fraction",
            where,
        )


def _phantom_canonical(preset: Preset, images: np.ndarray, pids: np.ndarray) -> np.ndarray:
    it = preset.intensity
    if it.kind == "minmax":  # one synthetic patient = one scan
        out = np.empty_like(images)
        for p in np.unique(pids):
            sel = pids == p
            lo, hi = float(images[sel].min()), float(images[sel].max())
            out[sel] = (images[sel] - lo) / max(hi - lo, 1e-12)
        return out * 2.0 - 1.0
    x = np.clip(images, it.lo, it.hi)
    return ((x - it.lo) / (it.hi - it.lo) * 2.0 - 1.0).astype(np.float32)


def _params(
    preset: Preset,
    size: int,
    n: int | None,
    seed: int,
    test_fraction: float,
    options: dict,
    source: str,
    data_dir: Path | None,
) -> dict[str, Any]:
    return {
        "prep_version": PREP_VERSION,
        "preset": preset.as_dict(),
        "size": size,
        "n": n,
        "seed": seed,
        "test_fraction": test_fraction,
        "options": {k: v for k, v in sorted(options.items()) if v is not None},
        "source": source,
        "data_dir": str(data_dir.resolve()) if data_dir else None,
    }


def _from_arrays(
    preset: Preset, arrays: dict[str, np.ndarray], manifest: dict, path: Path
) -> PreparedDataset:
    mapping = preset.mapping
    meta = {
        "preset": preset.name,
        "source": manifest["source"],
        "fingerprint": manifest["fingerprint"],
    }
    sets = {}
    for part in ("train", "test"):
        x = arrays[f"{part}_images"]
        sets[part] = ImageSet(
            images=x[:, None],
            sources=[str(s) for s in arrays[f"{part}_sources"]],
            mapping=mapping,
            meta={**meta, "split": part},
        )
    out = PreparedDataset(
        sets["train"],
        sets["test"],
        manifest["description"],
        manifest["source"],
        manifest["fingerprint"],
        mapping,
        manifest["split"],
        preset.name,
        manifest["params"],
        path,
        True,
    )
    if manifest.get("classes") is not None:
        out.classes = list(manifest["classes"])
        out.train_labels = arrays["train_labels"].astype(np.int64)
        out.test_labels = arrays["test_labels"].astype(np.int64)
    return out


def prepare_dataset(
    name: str,
    *,
    data_dir: Path | str | None = None,
    size: int = 64,
    n: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    cache_dir: Path | str | None = None,
    use_cache: bool = True,
    options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> PreparedDataset:
    """Prepare preset ``name`` at ``size`` x ``size``: phantom when ``data_dir`` is None, else real files.

    ``n`` caps the number of slices (phantom default: the preset's ``phantom_n``; real data:
    patients are read in sorted order until ``n`` slices, chest takes the first ``n`` images
    instead of 5500). ``options``: ``{"frames": "ed_es"|"all"|"0,5"}`` for heart;
    ``{"labels": "phantom"|"folders"|"csv", "label_finding": NAME, "prevalence": p,
    "finding_strength": s}`` for class labels (see the module docstring).
    """
    t0 = time.perf_counter()
    preset = get_preset(name)
    if size < 8:
        raise UsageError(f"size must be at least 8, got {size}")
    if n is not None and n < 2:
        raise UsageError(f"n must be at least 2, got {n}")
    options = _label_options(dict(options or {}), data_dir is not None)
    say = progress or (lambda _msg: None)
    if data_dir is None:
        result = _prepare_phantom(
            preset, size, n, seed, test_fraction, cache_dir if use_cache else None, options
        )
    else:
        folder = Path(cache_dir) if cache_dir is not None else cache.default_cache_dir()
        result = _prepare_real(
            preset,
            Path(data_dir),
            size,
            n,
            seed,
            test_fraction,
            folder if use_cache else None,
            options,
            say,
        )
    result.elapsed_s = time.perf_counter() - t0
    return result


def _label_options(options: dict[str, Any], real: bool) -> dict[str, Any]:
    """Check the label options and fill the phantom's defaults (so equal data hash equally)."""
    mode = options.get("labels")
    phantom_keys = [k for k in PHANTOM_LABEL_DEFAULTS if options.get(k) is not None]
    if options.get("label_finding") is not None and mode is None:
        options["labels"] = mode = "csv"
    if mode is None:
        if phantom_keys:
            raise UsageError(f"{phantom_keys[0]} applies only to the labelled phantom")
        return options
    allowed = ("folders", "csv") if real else ("phantom",)
    if mode not in allowed:
        where = "real data (--data)" if real else "the built-in phantom"
        raise UsageError(
            f"labels {mode!r} do not apply to {where}; choose {' or '.join(allowed)}"
            + ("" if real else " (folder and CSV labels need --data)")
        )
    if mode == "csv" and not options.get("label_finding"):
        raise UsageError("labels from the CSV need --label-finding NAME (e.g. Pneumonia)")
    if mode != "csv" and options.get("label_finding") is not None:
        raise UsageError("--label-finding reads the ChestX-ray14 CSV; it cannot be combined "
                         f"with labels {mode!r}")
    if mode == "phantom":
        for k, v in PHANTOM_LABEL_DEFAULTS.items():
            options[k] = float(options[k]) if options.get(k) is not None else v
    elif phantom_keys:
        raise UsageError(f"{phantom_keys[0]} applies only to the labelled phantom")
    return options


def _prepare_phantom(
    preset: Preset,
    size: int,
    n: int | None,
    seed: int,
    test_fraction: float,
    cache_dir: Path | str | None,
    options: dict,
) -> PreparedDataset:
    count = n if n is not None else preset.phantom_n
    params = _params(preset, size, count, seed, test_fraction, options, "phantom", None)
    fp = cache.fingerprint(params, None)
    key = cache.cache_key(preset.name, params)
    folder = Path(cache_dir) if cache_dir is not None else None
    if folder is not None:
        manifest = cache.read_manifest(folder, key)
        if manifest is not None and manifest.get("fingerprint") == fp:
            arrays = cache.load_arrays(folder, key)
            if arrays is not None:
                return _from_arrays(preset, arrays, manifest, folder / f"{key}.npz")
    y = classes = None
    if options.get("labels") == "phantom":
        found = generate_labelled_phantoms(
            preset.name, count, size, seed,
            prevalence=options["prevalence"], strength=options["finding_strength"],
        )
        images, pids, y, classes = found.images, found.patients, found.y, list(found.classes)
    else:
        images, _labels, pids = generate_phantoms(
            preset.name, count, size, seed, return_patients=True
        )
    canon = _phantom_canonical(preset, images, pids)
    patients = [f"phantom-{int(p):04d}" for p in pids]
    sources = []
    for i, p in enumerate(patients):
        first = i == 0 or patients[i - 1] != p
        sources.append(f"{p}:s{0 if first else int(sources[-1].rsplit(':s', 1)[1]) + 1}")
    meta = {"preset": preset.name, "source": "phantom", "fingerprint": fp}
    train, test, split, split_y = _split_sets(
        canon, sources, patients, preset.mapping, meta, seed, test_fraction, y
    )
    n_pat = len(set(patients))
    desc = f"{preset.name}: built-in phantom, {count} slices ({n_pat} synthetic patients), {size}x{size}"
    if classes is not None:
        desc += (f", labelled {' vs '.join(classes)} (prevalence {options['prevalence']:g}, "
                 f"finding strength {options['finding_strength']:g})")
    out = PreparedDataset(
        train, test, desc, "phantom", fp, preset.mapping, split, preset.name, params
    )
    _attach_labels(out, classes, split_y, f"{preset.name} phantom")
    if folder is not None:
        out.cache_path = _save(folder, key, out, params, None)
    return out


def _interleave_classes(cases: list) -> list:
    """Order labelled cases so that any prefix keeps the classes' proportions (for ``n``).

    The i-th of a class's m cases gets the position (i + 0.5) / m; a stable sort on it
    interleaves the classes, so capping the slice count does not drop a whole class.
    """
    by_class: dict[int, list] = {}
    for c in cases:
        by_class.setdefault(int(c.detail.get("class", -1)), []).append(c)
    if len(by_class) < 2:
        return cases
    keyed = [((i + 0.5) / len(group), k, c) for k, group in sorted(by_class.items())
             for i, c in enumerate(group)]
    return [c for _, _, c in sorted(keyed, key=lambda t: (t[0], t[1]))]


def _attach_labels(
    out: PreparedDataset,
    classes: list[str] | None,
    split_y: tuple[np.ndarray, np.ndarray] | None,
    where: str,
) -> None:
    if classes is None or split_y is None:
        return
    check_class_counts(classes, split_y[0], split_y[1], where)
    out.classes = list(classes)
    out.train_labels, out.test_labels = (a.astype(np.int64) for a in split_y)


def _save(folder: Path, key: str, ds: PreparedDataset, params: dict, inputs: dict | None) -> Path:
    arrays = {}
    for part, s in (("train", ds.train), ("test", ds.test)):
        arrays[f"{part}_images"] = s.images[:, 0].numpy()
        arrays[f"{part}_sources"] = np.array(s.sources, dtype=str)
    if ds.labelled:
        arrays["train_labels"] = ds.train_labels
        arrays["test_labels"] = ds.test_labels
    manifest = {
        "description": ds.description,
        "source": ds.source,
        "fingerprint": ds.fingerprint,
        "params": params,
        "split": ds.split,
        "inputs": inputs or {},
        "classes": ds.classes,
    }
    return cache.write_entry(folder, key, arrays, manifest)


def _prepare_real(
    preset: Preset,
    root: Path,
    size: int,
    n: int | None,
    seed: int,
    test_fraction: float,
    cache_dir: Path | None,
    options: dict,
    say: Callable[[str], None],
) -> PreparedDataset:
    limit = n if n is not None else preset.max_images
    chest_limit = limit if preset.name == "chest" else None
    classes = None
    if options.get("labels") is not None:
        cases, classes = discover_labelled(preset, root, options, chest_limit)
        cases = _interleave_classes(cases)
    else:
        cases = discover(preset, root, options, chest_limit)
    files = [p for c in cases for p in c.all_files()]
    params = _params(preset, size, n, seed, test_fraction, options, "real", root)
    key = cache.cache_key(preset.name, params)
    previous = cache.read_manifest(cache_dir, key) if cache_dir is not None else None
    inputs = cache.digest_inputs(files, root, (previous or {}).get("inputs"))
    fp = cache.fingerprint(params, inputs)
    if previous is not None and previous.get("fingerprint") == fp:
        arrays = cache.load_arrays(cache_dir, key)
        if arrays is not None:
            say(f"read from cache {cache_dir / key}.npz")
            return _from_arrays(preset, arrays, previous, cache_dir / f"{key}.npz")
    chunks, sources, patients, ys = [], [], [], []
    total = 0
    used = []
    for i, case in enumerate(cases):
        say(f"[{i + 1}/{len(cases)}] {case.patient}")
        got = load_case(preset, case, size, options)
        if len(got.images) == 0:
            continue
        take = len(got.images) if n is None else min(len(got.images), n - total)
        chunks.append(got.images[:take])
        sources += got.sources[:take]
        patients += [case.patient] * take
        if classes is not None:
            ys.append(got.labels[:take])
        used.append(case)
        total += take
        if n is not None and total >= n:
            break
    if not chunks:
        raise InputError(
            f"no slices left after {preset.name} preprocessing ({preset.slice_selection})",
            str(root),
        )
    images = np.concatenate(chunks).astype(np.float32)
    fmts = "+".join(sorted({c.fmt for c in used}))
    meta = {"preset": preset.name, "source": "real", "fingerprint": fp, "data_dir": str(root)}
    y = np.concatenate(ys).astype(np.int64) if classes is not None else None
    train, test, split, split_y = _split_sets(
        images, sources, patients, preset.mapping, meta, seed, test_fraction, y
    )
    desc = (
        f"{preset.name}: {fmts} from {root}, {len(set(patients))} patients, {len(images)} slices, "
        f"{size}x{size}"
    )
    if classes is not None:
        desc += f", labelled {' vs '.join(classes)}"
    out = PreparedDataset(train, test, desc, "real", fp, preset.mapping, split, preset.name, params)
    _attach_labels(out, classes, split_y, str(root))
    if cache_dir is not None:
        out.cache_path = _save(cache_dir, key, out, params, inputs)
    return out
