"""The real-vs-real floor: size-matched against a second real sample, halves labelled n = N/2.

Measured on the phantoms (see README, "Real-vs-real floor"): at the same N, two real sets of
different patients score worse than two halves of one held-out set, whose halves share patients;
and for FID (bias ~ 1/N) and epsilon-smoothed DS a half-size floor reads worse than a size-matched
one. Both effects are why the floor compares the held-out set with an equally sized sample of
other real images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

try:
    from _inception_fixtures import inception_material
except ImportError:
    from tests._inception_fixtures import inception_material  # noqa: F401

from genbench.imageset import ImageSet
from genbench.metrics.pipeline import EvalOptions, evaluate, floor, floor_plan


def test_floor_plan_size_matched_smaller_and_halves() -> None:
    p = floor_plan(100, 300, seed=0)
    assert p.real_rows is None and len(p.other_rows) == 100 and len(set(p.other_rows)) == 100
    assert p.info["size_matched"] and p.info["n_real"] == p.info["n_synth"] == 100
    small = floor_plan(100, 40, seed=0)
    assert len(small.real_rows) == 40 and len(small.other_rows) == 40 and not small.info["size_matched"]
    assert "n = 40" in small.info["note"]
    halves = floor_plan(101, None, seed=0)
    assert halves.info["method"] == "halves" and not halves.info["size_matched"]
    assert "n = N/2 = 50" in halves.info["note"]
    assert not set(halves.real_rows) & set(halves.other_rows)
    np.testing.assert_array_equal(floor_plan(100, 300, seed=0).other_rows, p.other_rows)  # reproducible


def _phantom(n: int = 600) -> tuple[ImageSet, ImageSet]:
    from genbench.data.prepare import prepare_dataset

    p = prepare_dataset("heart", size=16, n=n, use_cache=False)
    return p.test, p.train


def test_evaluate_with_floor_real_is_size_matched_and_reports_it() -> None:
    real, train = _phantom()
    synth = ImageSet(real.images.flip(-1))
    opts = EvalOptions(metrics=("ds",), floor=True, bootstrap=50, device="cpu")
    rep = evaluate(real, synth, opts, floor_real=train, train=train)
    assert rep.floor_info["size_matched"] and rep.floor_info["n_real"] == len(real)
    f = rep.floor["ds"]
    assert f.status == "ok" and f.n_real == f.n_synth == len(real) == rep.metrics["ds"].n_synth
    assert f.params["floor"]["train_for_floor"].startswith("the training set minus")
    assert f.ci is not None and f.ci[0] <= f.value <= f.ci[1]
    # The same REAL resamples in both: the floor can be paired with the model.
    assert len(f.extra["bootstrap"]) == len(rep.metrics["ds"].extra["bootstrap"]) == 50
    js = rep.to_json()
    assert js["floor_info"]["method"] == "size-matched"
    halves = evaluate(real, synth, opts)
    assert halves.floor_info["method"] == "halves" and halves.floor["ds"].n_real == len(real) // 2


def test_floor_sample_is_left_out_of_the_training_set_it_came_from() -> None:
    from genbench.metrics.pipeline import _floor_context

    real, train = _phantom(200)
    opts = EvalOptions(metrics=("ds",), device="cpu")
    ctx, info = _floor_context(real, train, train, opts, "cpu", None, {})
    assert len(ctx.synth) == len(real) and len(ctx.train) == len(train) - len(real)
    rows = {bytes(x.numpy().tobytes()) for x in ctx.synth.images}
    assert not rows & {bytes(x.numpy().tobytes()) for x in ctx.train.images}
    ctx2, _ = _floor_context(real, train, None, opts, "cpu", None, {})
    assert ctx2.train is None


def _disjoint_draws(real: torch.Tensor, train: torch.Tensor, draws: int, seed: int = 0):
    """(REAL, N train images) and (N/2 of REAL, N/2 train images): patient-disjoint at two sizes."""
    rng = np.random.default_rng(seed)
    n = len(real)
    for _ in range(draws):
        s = train[rng.choice(len(train), n, replace=False)]
        half = rng.choice(n, n // 2, replace=False)
        yield (real, s), (real[half], s[: n // 2])


def test_size_matched_floor_is_lower_than_half_size_for_ds_epsilon() -> None:
    from genbench.metrics.ds import ds_from_nearest
    from genbench.metrics.ssim import nearest_ssim

    real, train = _phantom(1000)
    full, half = [], []
    for (r, s), (hr, hs) in _disjoint_draws(real.images, train.images, 4):
        full.append(ds_from_nearest(nearest_ssim(r), nearest_ssim(s), estimator="epsilon").value)
        half.append(ds_from_nearest(nearest_ssim(hr), nearest_ssim(hs), estimator="epsilon").value)
    assert np.mean(full) < 0.75 * np.mean(half), (full, half)


def test_size_matched_floor_is_lower_than_half_size_for_fid(inception_material) -> None:
    from genbench.metrics.fidelity import frechet_distance
    from genbench.metrics.inception import InceptionFeatureExtractor

    real, train = _phantom(200)
    ext = InceptionFeatureExtractor(inception_material.weights, device="cpu", batch_size=40)
    fr = ext.features(real.images, use_cache=False)[0].pool3
    ft = ext.features(train.images[:80], use_cache=False)[0].pool3
    rng = np.random.default_rng(0)
    n = len(fr)
    full, half = [], []
    for _ in range(4):
        s = ft[rng.choice(len(ft), n, replace=False)]
        h = rng.choice(n, n // 2, replace=False)
        full.append(frechet_distance(fr, s))
        half.append(frechet_distance(fr[h], s[: n // 2]))
    assert np.mean(full) < np.mean(half), (full, half)


def test_halves_of_a_held_out_set_share_patients_and_read_optimistic() -> None:
    """Why halves are labelled and not trusted: slices of one patient fall in both halves."""
    from genbench.metrics.ds import ds_from_nearest
    from genbench.metrics.pipeline import floor_split
    from genbench.metrics.ssim import nearest_ssim

    real, train = _phantom(1000)
    ia, ib = floor_split(len(real), 0)
    halves = ds_from_nearest(nearest_ssim(real.images[ia]), nearest_ssim(real.images[ib])).value
    rng = np.random.default_rng(0)
    s = train.images[rng.choice(len(train), len(real), replace=False)]
    matched = ds_from_nearest(nearest_ssim(real.images), nearest_ssim(s)).value
    assert halves < matched
