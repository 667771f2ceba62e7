"""Make a blinded reader study: ``n`` real and ``n`` synthetic images, shuffled, in one page.

Blinding: both classes go through the same path (the modality's display window -> 8-bit
grayscale -> PNG with no metadata, same size), item ids are random and the display order is a
seeded shuffle, so neither the page's bytes, the ids nor the order carry the truth. The truth
goes to ``key.json`` only, which stays with the organiser.

Determinism: the same inputs, options and seed give byte-identical ``index.html`` and
``key.json`` (the key's ``created`` field aside). The study id is derived from the displayed
images and the seed, so two different studies never share an id and answers cannot be scored
against the wrong key.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import genbench
from genbench.errors import InputError, UsageError
from genbench.imageset import ImageSet, IntensityMapping

__all__ = [
    "DEFAULT_WINDOWS",
    "KEY_SCHEMA",
    "StudyOptions",
    "encode_png",
    "load_run_sets",
    "make_study",
    "to_display_uint8",
]

KEY_SCHEMA = "genbench.turing.key/1"
TRUTH = ("real", "synthetic")

# Display windows (in the preset's units) a reader would choose for each modality. CT in the
# soft-tissue window W400/L40: over the full HU range [-1024, 3012] soft tissue would get only
# ~13 grey levels in 8 bits. X-ray and (min-max normalised) MRI are shown over their full range.
DEFAULT_WINDOWS: dict[str, tuple[float, float]] = {
    "pelvic": (-160.0, 240.0),
    "abdomen": (-160.0, 240.0),
}


@dataclass
class StudyOptions:
    n: int = 25
    seed: int = 0
    window: tuple[float, float] | None = None  # in the mapping's units; None: the full range
    readers: list[str] = field(default_factory=list)
    title: str = "visual Turing test"


def to_display_uint8(images: np.ndarray, mapping: IntensityMapping,
                     window: tuple[float, float] | None) -> np.ndarray:
    """Canonical [-1, 1] images -> 8-bit display values through ``window`` (source units)."""
    x = np.asarray(images, dtype=np.float64)
    if window is None:
        u = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0
    else:
        lo, hi = window
        raw = x * mapping.scale + mapping.offset
        u = np.clip((raw - lo) / (hi - lo), 0.0, 1.0)
    return np.floor(u * 255.0 + 0.5).astype(np.uint8)


def encode_png(u8: np.ndarray) -> bytes:
    """One 8-bit grayscale PNG, no metadata chunks, fixed compression: identical treatment for
    every image whatever its origin."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(u8), mode="L").save(buf, format="PNG", compress_level=6,
                                                             optimize=False)
    return buf.getvalue()


def _check_readers(readers: list[str]) -> list[str]:
    clean = [r.strip() for r in readers if r.strip()]
    if len(set(clean)) != len(clean):
        raise UsageError(f"--readers lists a name twice: {', '.join(clean)}")
    return clean


def _draw(n_avail: int, n: int, rng: np.random.Generator, what: str, where: str) -> np.ndarray:
    if n_avail < n:
        raise InputError(f"{what} has {n_avail} image(s); the study needs --n {n}", where)
    return np.sort(rng.choice(n_avail, size=n, replace=False))


def _refuse_existing(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("--out exists and is not a folder", str(out))
    for name in ("key.json", "index.html"):
        if (out / name).exists():
            raise InputError(f"already holds a study ({name}); refusing to overwrite it "
                             "(choose another --out folder)", str(out))


def make_study(real: ImageSet, synth: ImageSet, out: str | Path, options: StudyOptions,
               *, mapping: IntensityMapping | None = None,
               provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out/index.html`` and ``out/key.json``; returns the key (a dict).

    ``mapping`` says what the canonical values mean (for the window; default: the real set's).
    ``provenance`` (paths, run, dataset) is recorded in the key only.
    """
    from genbench.io.atomic import atomic_write_json, atomic_write_text
    from genbench.turing.page import render_page

    out = Path(out)
    if options.n < 1:
        raise UsageError(f"--n must be at least 1, got {options.n}")
    readers = _check_readers(options.readers)
    if real.size != synth.size:
        raise UsageError(f"real images are {real.size[0]}x{real.size[1]} but synthetic ones "
                         f"{synth.size[0]}x{synth.size[1]}; pass --size N to show both at N x N")
    if options.window is not None and not options.window[0] < options.window[1]:
        raise UsageError(f"--window expects LO < HI, got {options.window}")
    _refuse_existing(out)
    mapping = mapping or real.mapping
    prov = dict(provenance or {})

    rng = np.random.default_rng(options.seed)
    pick_real = _draw(len(real), options.n, rng, "REAL", prov.get("real", "REAL"))
    pick_synth = _draw(len(synth), options.n, rng, "SYNTH", prov.get("synth", "SYNTH"))
    pool: list[tuple[str, int, str]] = [("real", int(i), real.sources[i]) for i in pick_real]
    pool += [("synthetic", int(i), synth.sources[i]) for i in pick_synth]
    order = rng.permutation(len(pool))

    pngs: list[bytes] = []
    for k in order:
        truth, idx, _ = pool[k]
        src = real if truth == "real" else synth
        u8 = to_display_uint8(src.images[idx, 0].numpy(), mapping, options.window)
        pngs.append(encode_png(u8))
    digest = hashlib.sha256(f"genbench-turing|{options.seed}|{options.title}|".encode())
    for png in pngs:
        digest.update(hashlib.sha256(png).digest())
    study_id = "gt-" + digest.hexdigest()[:12]
    # Random ids drawn after the shuffle, position by position: independent of the truth.
    ids: list[str] = []
    while len(ids) < len(pool):
        cand = rng.bytes(5).hex()
        if cand not in ids:
            ids.append(cand)

    items = [{"id": ids[p], "src": "data:image/png;base64," + base64.b64encode(pngs[p]).decode()}
             for p in range(len(pool))]
    page = render_page(study_id=study_id, title=options.title, readers=readers, items=items,
                       pixelated=max(real.size) < 256, version=genbench.__version__)
    key_items = []
    for p, k in enumerate(order):
        truth, idx, source = pool[k]
        key_items.append({"id": ids[p], "truth": truth, "position": p + 1, "source": source,
                          "index": idx})
    key = {
        "schema": KEY_SCHEMA,
        "study_id": study_id,
        "title": options.title,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "genbench_version": genbench.__version__,
        "n_real": options.n,
        "n_synthetic": options.n,
        "seed": options.seed,
        "readers": readers,
        "display": {
            "window": None if options.window is None else list(options.window),
            "unit": mapping.unit if options.window is not None else "canonical [-1, 1]",
            "size": list(real.size),
            "encoding": "8-bit grayscale PNG",
        },
        "page_sha256": hashlib.sha256(page.encode("utf-8")).hexdigest(),
        "provenance": prov,
        "items": key_items,
    }
    out.mkdir(parents=True, exist_ok=True)
    # The key first: a page without its key could never be scored.
    atomic_write_json(out / "key.json", key)
    atomic_write_text(out / "index.html", page)
    return key


def load_run_sets(model_dir: str | Path, *, progress: bool = False
                  ) -> tuple[ImageSet, ImageSet, dict[str, Any]]:
    """The held-out real images and the samples of one model of a ``genbench run``.

    ``model_dir`` is ``<out>/<dataset>/<preset>/<model>``. The run keeps only its samples; the
    held-out set is prepared again exactly as the run prepared it (from the run's data cache
    when present) and checked against the SHA-256 recorded in ``data.json``.
    """
    from genbench.data import prepare_dataset
    from genbench.report.results import read_json
    from genbench.runner import load_npz_images

    mdir = Path(model_dir)
    samples = mdir / "samples.npz"
    root = mdir.parent
    if not samples.is_file():
        raise InputError("is not a run's model folder (no samples.npz); give RUN_DIR/MODEL, or "
                         "REAL and SYNTH image folders", str(mdir))
    data_json, results_json = root / "data.json", root / "results.json"
    for f in (data_json, results_json):
        if not f.is_file():
            raise InputError(f"run folder lacks {f.name}; was the run finished?", str(root))
    data = read_json(data_json)
    results = read_json(results_json)
    name = data.get("name")
    try:
        seed = int(results["settings"]["seed"])
        size = int(data["size"])
        total = int(data["n_train"]) + int(data["n_test"])
        want = str(data["test_sha256"])
    except (KeyError, TypeError, ValueError):
        raise InputError("data.json/results.json lack the dataset's name, size, sizes, seed or "
                         "test_sha256", str(root)) from None
    data_dir = data.get("data_dir")
    cache_dir = root.parent.parent / ".cache" / "data"
    cache = cache_dir if cache_dir.is_dir() else None
    test = None
    record = data.get("prepare")
    if record:  # the run recorded how it prepared the data (labelled runs: the label options too)
        from genbench.utility.rundir import prepare_from_record

        attempts = [lambda: prepare_from_record(record, cache_dir=cache)]
    else:
        # Older runs did not record --n-images; the held-out set is the same for "every image"
        # and for an explicit cap equal to the total, which covers both.
        attempts = [lambda n=n: prepare_dataset(name, data_dir=data_dir, size=size, n=n, seed=seed,
                                                cache_dir=cache) for n in (total, None)]
    for attempt in attempts:
        prepared = attempt()
        if prepared.test.sha256() == want:
            test = prepared.test
            break
    if test is None:
        raise InputError("cannot rebuild the held-out real images this run was scored on (the "
                         "data changed since?); give REAL and SYNTH image folders instead", str(root))
    images = load_npz_images(samples)
    synth = ImageSet(images, sources=[f"{mdir.name}/samples.npz#{i}" for i in range(len(images))],
                     mapping=test.mapping)
    test.sources = [f"{name}/held-out#{i}" for i in range(len(test))]
    info = {"dataset": name, "model": mdir.name, "run": str(root), "seed": seed,
            "real": f"{root}/held-out ({name}, {len(test)} images)", "synth": str(samples)}
    return test, synth, info
