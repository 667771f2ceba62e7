"""The quick preset makes images: trained on a phantom for its full preset length, at most 2 %
of its samples are blank, saturated or off the real images' intensity range (issue 16).
Minutes on a 2-core CPU: marked slow (``pytest -m slow``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def _flags_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quick_samples.py"
    spec = importlib.util.spec_from_file_location("quick_samples", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flags_catch_the_defects():
    flags = _flags_module().bad_sample_flags
    g = torch.Generator().manual_seed(0)
    real = torch.full((20, 1, 16, 16), -1.0)
    real[:, :, 4:12, 4:12] = torch.rand(20, 1, 8, 8, generator=g) * 0.5
    synth = real.clone()
    synth[0] = 0.1  # constant
    synth[1] = 1.0  # saturated
    synth[2] = synth[2] * 0.3  # washed out: background lifted to -0.3
    f = flags(synth, real)
    assert f["constant"][:1].all() and f["saturated"][1] and f["off_range"][2]
    assert f["bad"].tolist() == [True, True, True] + [False] * 17


def test_quick_preset_samples_are_images(tmp_path):
    from genbench.data import prepare_dataset
    from mtddpm.model import create

    data = prepare_dataset("pelvic", size=32, seed=0, cache_dir=tmp_path / "data")
    gen = create("quick", device="cpu")
    gen.fit(data.train, seed=0)
    synth = gen.sample(len(data.test), seed=0)
    bad = _flags_module().bad_sample_flags(synth, data.test.images)["bad"]
    assert bad.double().mean().item() <= 0.02, f"{int(bad.sum())} of {len(bad)} quick samples are not images"
