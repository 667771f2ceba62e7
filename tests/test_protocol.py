"""The registry and the conformance suite's ability to catch broken generators."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from baselines.ddpm import DDPM, create
from genbench.errors import UsageError
from genbench.protocol import (
    DEFAULT_PRESETS,
    Generator,
    available_generators,
    create_generator,
    factory_presets,
    get_factory,
)
from genbench.testing import check_generator, toy_images

TINY = dict(ch=8, ch_mult=(1, 2), groups=4, num_res_blocks=1, attn_resolutions=(8,),
            batch_size=8, log_every=1, sample_steps=3, ema_start=0, ema_decay=0.5, lr=2e-3)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_registry_lists_baselines_and_builds_them():
    names = available_generators()
    assert {"ddpm", "wgan-gp"} <= set(names) and names == sorted(names)
    g = create_generator("ddpm", "quick", 16, **TINY)
    assert isinstance(g, Generator) and g.config.resolution == 16
    assert get_factory("ddpm") == create
    with pytest.raises(UsageError, match="unknown generator 'nope'.*ddpm"):
        get_factory("nope")


def test_factory_presets():
    assert factory_presets(create) == ("quick", "paper")
    assert factory_presets(lambda **kw: None) == DEFAULT_PRESETS


def test_toy_images_are_canonical():
    x = toy_images(6, 16)
    assert x.shape == (6, 1, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.3


class _Broken(DDPM):
    """A DDPM with one injected fault, to show each check can fail."""

    fault = ""

    def sample(self, n, *, seed=0, batch_size=None):
        x = super().sample(n, seed=seed, batch_size=batch_size)
        return x * 3 if self.fault == "range" else x

    def generate(self, n, generator):
        x = super().generate(n, generator)
        if self.fault == "random":
            return x + torch.randn_like(x) * 0.01  # ignores the seed's generator
        return x

    def load(self, path):
        if self.fault != "load":
            super().load(path)  # "load" fault: silently keeps its own weights


@pytest.mark.parametrize(
    "fault, check, message",
    [("range", "sample", "within"), ("random", "determinism", "same seed"),
     ("load", "save_load", "samples differ")],
)
def test_suite_catches_faults(fault, check, message):
    cls = type(f"Broken_{fault}", (_Broken,), {"fault": fault})
    with pytest.raises(AssertionError, match=message):
        check_generator(cls.factory, resolution=16, overrides=TINY, checks=(check,))


def test_suite_catches_inexact_resume():
    class Forgetful(DDPM):
        # Resumes with fresh optimizer state: weights drift from the uninterrupted run.
        def make_task(self):
            task = super().make_task()
            original = task.build_optimizers

            def build(modules):
                return original(modules)

            task.build_optimizers = build
            task.load_extra_state = lambda state: None
            return task

        def fit(self, train, *, workdir=None, steps=None, seed=0, progress=None):
            if workdir is not None and (workdir / "checkpoints").exists():
                seed = seed + 1  # a different noise stream after resuming
                return super().fit(train, workdir=workdir / "again", steps=steps, seed=seed)
            return super().fit(train, workdir=workdir, steps=steps, seed=seed)

    with pytest.raises(AssertionError, match="resume"):
        check_generator(Forgetful.factory, resolution=16, overrides=TINY, checks=("resume",))


def test_config_is_a_dataclass_with_resolved_values():
    g = create("quick", resolution=16, **TINY)
    d = dataclasses.asdict(g.config)
    assert d["resolution"] == 16 and d["ch"] == 8 and d["sampler"] == "ancestral"
