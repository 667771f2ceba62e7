"""Small image sets and a study for the reader-study tests (phantoms, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genbench.data.phantoms import generate_phantoms
from genbench.data.presets import get_preset
from genbench.imageset import ImageSet


def phantom_set(n: int, size: int = 24, seed: int = 0, dataset: str = "pelvic") -> ImageSet:
    preset = get_preset(dataset)
    img, _ = generate_phantoms(dataset, n, size, seed=seed)
    x = torch.from_numpy(np.asarray(preset.mapping.to_canonical(img), dtype=np.float32))
    return ImageSet(x.clamp(-1, 1)[:, None], sources=[f"{dataset}/phantom_{seed}_{i:03d}.png"
                                                     for i in range(n)],
                    mapping=preset.mapping)


def noisy(images: ImageSet, sigma: float, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    x = (images.images + sigma * torch.randn(images.images.shape, generator=g)).clamp(-1, 1)
    return ImageSet(x, sources=[f"synth/sample_{i:03d}.png" for i in range(len(images))],
                    mapping=images.mapping)


def make_small_study(out: Path, n: int = 6, seed: int = 0, readers: list[str] | None = None,
                     title: str = "pelvic", size: int = 24):
    from genbench.turing.study import DEFAULT_WINDOWS, StudyOptions, make_study

    real = phantom_set(2 * n, size=size, seed=1)
    synth = noisy(phantom_set(2 * n, size=size, seed=2), 0.2)
    opts = StudyOptions(n=n, seed=seed, window=DEFAULT_WINDOWS["pelvic"], readers=readers or [],
                        title=title)
    return make_study(real, synth, out, opts, provenance={"real": "phantom-real",
                                                          "synth": "phantom-synth"})


def answers_file(key: dict, reader: str, calls: dict[str, str], confidence: dict | None = None,
                 study_id: str | None = None) -> dict:
    """An answers document as the page writes it."""
    conf = confidence or {}
    return {
        "schema": "genbench.turing.answers/1",
        "study_id": study_id or key["study_id"],
        "reader": reader,
        "n_items": len(key["items"]),
        "answers": [{"id": i, "answer": a, "confidence": conf.get(i), "time_ms": 1200}
                    for i, a in calls.items()],
    }
