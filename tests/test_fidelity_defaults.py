"""Default genbench IS and KID equal default torch-fidelity values on the same folders and weights
(torch-fidelity's default rng_seed, 2020, for IS split shuffling and KID subsets)."""

from __future__ import annotations

import pytest

try:
    from _inception_fixtures import inception_material
except ImportError:
    from tests._inception_fixtures import inception_material  # noqa: F401

from genbench.metrics import fidelity as fd


def test_default_seed_is_torch_fidelitys() -> None:
    from torch_fidelity.defaults import DEFAULTS

    assert fd.TF_SEED == DEFAULTS["rng_seed"]
    assert fd.IS_SPLITS == DEFAULTS["isc_splits"]
    assert fd.KID_SUBSETS == DEFAULTS["kid_subsets"] and fd.KID_SUBSET_SIZE == DEFAULTS["kid_subset_size"]
    assert fd.KID_DEGREE == DEFAULTS["kid_kernel_poly_degree"] and fd.KID_COEF0 == DEFAULTS["kid_kernel_poly_coef0"]


@pytest.fixture(scope="module")
def default_runs(inception_material):
    import torch_fidelity

    from genbench.io import read_image_folder

    m = inception_material
    n = min(len(m.real_u8), len(m.synth_u8))
    # torch-fidelity with every default except what it cannot do on 20 images: a KID subset of
    # 1000 (genbench adapts it to min(n_real, n_synth) and says so in params).
    ref = torch_fidelity.calculate_metrics(
        input1=str(m.synth_dir), input2=str(m.real_dir), cuda=False, isc=True, kid=True,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(m.weights),
        kid_subset_size=n // 2, cache=False, verbose=False)
    real, synth = read_image_folder(m.real_dir), read_image_folder(m.synth_dir)
    ours = fd.compute_inception_metrics(real.images, synth.images, metrics={"is", "kid"}, weights=m.weights,
                                        kid_subset_size=n // 2, cache_dir=m.cache_dir)
    seed0 = fd.compute_inception_metrics(real.images, synth.images, metrics={"is", "kid"}, weights=m.weights,
                                         kid_subset_size=n // 2, cache_dir=m.cache_dir, seed=0)
    return ref, ours, seed0


def test_default_is_and_kid_equal_torch_fidelity_defaults(default_runs) -> None:
    ref, ours, _ = default_runs
    assert ours["is"].params["shuffle_seed"] == 2020 and ours["kid"].params["seed"] == 2020
    assert ours["is"].value == pytest.approx(ref["inception_score_mean"], abs=1e-6)
    assert ours["is"].std == pytest.approx(ref["inception_score_std"], abs=1e-6)
    assert ours["kid"].value == pytest.approx(ref["kernel_inception_distance_mean"], abs=1e-6)
    assert ours["kid"].std == pytest.approx(ref["kernel_inception_distance_std"], abs=1e-6)
    # the seed matters here (a subset of half the set, shuffled splits), so equality is not vacuous
    seed0 = default_runs[2]
    assert abs(seed0["is"].value - ref["inception_score_mean"]) > 1e-5
    assert abs(seed0["kid"].value - ref["kernel_inception_distance_mean"]) > 1e-5


def test_pipeline_defaults_equal_torch_fidelity_defaults(default_runs, inception_material) -> None:
    """Through `evaluate` with default options (no seed given): the same numbers."""
    from genbench.io import read_image_folder
    from genbench.metrics.pipeline import EvalOptions, evaluate

    ref, _, _ = default_runs
    m = inception_material
    n = min(len(m.real_u8), len(m.synth_u8))
    opts = EvalOptions(metrics=("is", "kid"), inception_weights=m.weights, kid_subset_size=n // 2,
                       cache_dir=m.cache_dir, device="cpu", bootstrap=0)
    assert opts.seed is None
    rep = evaluate(read_image_folder(m.real_dir), read_image_folder(m.synth_dir), opts)
    assert rep.metrics["is"].value == pytest.approx(ref["inception_score_mean"], abs=1e-6)
    assert rep.metrics["kid"].value == pytest.approx(ref["kernel_inception_distance_mean"], abs=1e-6)
    assert rep.metrics["kid"].ci is None  # --bootstrap 0: no intervals
