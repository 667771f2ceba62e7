"""The memorisation audit (``mem``): calibration, CI, verdicts on the phantoms, bad input.

Phantom sets: TRAIN is the training split; the held-out split is cut *by patient* into REAL
(calibration) and FRESH (a new real sample from patients nobody has seen). Slices of one patient
are alike, so calibration needs several patients: at 960 slices (24 held-out patients for the
volume presets, 12 per side) rather than 480 (5 per side, where one unusual patient in FRESH
put 16% of the pelvic FRESH slices above the threshold). A copier returns
training images with a little noise (and, with transforms, flipped or shifted); FRESH stands in
for an ideal generator.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genbench.data.prepare import prepare_dataset
from genbench.data.presets import PRESETS
from genbench.errors import InputError, UsageError
from genbench.metrics.mem import (
    Nearest,
    audit,
    compute_mem,
    conformal_rank,
    flagged_fraction_replicates,
    parse_transforms,
    threshold,
)
from genbench.stats import Bootstrap


# ------------------------------------------------------------------------------- calibration


def test_conformal_rank_by_hand() -> None:
    assert conformal_rank(9, 0.9) == 9          # ceil(0.9 * 10) = 9: the maximum
    assert conformal_rank(19, 0.9) == 18        # ceil(18.0) = 18
    assert conformal_rank(199, 0.99) == 198     # ceil(198.0)
    assert conformal_rank(50, 0.99) == 50       # ceil(50.49) = 51 > n: capped at the maximum
    assert conformal_rank(1000, 0.99) == 991    # ceil(990.99)
    tau, k, ideal = threshold(np.array([5.0, 1.0, 4.0, 2.0, 3.0]), 0.5)
    assert (tau, k, ideal) == (3.0, 3, 0.5)     # ceil(0.5 * 6) = 3rd smallest; 3 of 6 above


def test_false_flag_rate_of_exchangeable_images_is_the_ideal_rate() -> None:
    """Synthetic values drawn from the real distribution are flagged at (n + 1 - k) / (n + 1)
    on average: the exact conformal guarantee (the wrong quantile side or rank would not be)."""
    rng = np.random.default_rng(0)
    for n, q in [(19, 0.9), (99, 0.95), (40, 0.99)]:
        trials = 4000
        real = rng.standard_normal((trials, n))
        new = rng.standard_normal(trials)
        k = conformal_rank(n, q)
        tau = np.sort(real, axis=1)[:, k - 1]
        rate = float(np.mean(new > tau))
        ideal = (n + 1 - k) / (n + 1)
        assert rate == pytest.approx(ideal, abs=4 * math.sqrt(ideal * (1 - ideal) / trials)), (n, q)


def _near(values: np.ndarray) -> Nearest:
    v = np.asarray(values, dtype=np.float64)
    return Nearest(v, np.arange(v.size) % 3, np.zeros(v.size, dtype=np.int64))


def _audit(real: np.ndarray, synth: np.ndarray, boot: Bootstrap | None = None, quantile: float = 0.9):
    images = torch.zeros(len(synth), 1, 12, 12)
    train = torch.zeros(3, 1, 12, 12)
    return audit({"ssim": _near(real)}, {"ssim": _near(synth)}, synth=images, train=train,
                 transforms=parse_transforms("none"), quantile=quantile, boot=boot)


def test_audit_flags_strictly_above_the_threshold_by_hand() -> None:
    real = np.arange(1, 20) / 20.0             # 0.05 .. 0.95; k = 18 of 19 -> tau = 0.90
    synth = np.array([0.2, 0.9, 0.91, 0.99, 0.5, 0.95, 0.1, 0.3])
    res = _audit(real, synth)
    assert res.params["threshold"] == pytest.approx(0.90)
    assert res.value == pytest.approx(3 / 8)   # 0.91, 0.99, 0.95; 0.9 is not above
    assert res.params["flagged"]["synth_index"] == [3, 5, 2]  # most similar first
    assert res.params["flagged"]["train_index"] == [0, 2, 2]
    assert res.params["median_ratio"] == pytest.approx(np.median(synth) / np.median(real))
    assert res.params["ideal_rate"] == pytest.approx(2 / 20)
    assert res.params["top_pairs"]["synth_index"][:3] == [3, 5, 2]


def test_ci_bootstrap_and_binomial() -> None:
    rng = np.random.default_rng(1)
    real = rng.uniform(0.4, 0.8, 120)
    synth = np.concatenate([rng.uniform(0.4, 0.8, 70), rng.uniform(0.9, 1.0, 30)])
    boot = Bootstrap(replicates=400, seed=3)
    res = _audit(real, synth, boot)
    lo, hi = res.ci
    assert 0.0 <= lo <= res.value <= hi <= 1.0 and hi - lo < 0.3
    assert "bootstrap" in res.ci_method and "Clopper-Pearson" in res.ci_method
    assert len(res.extra["bootstrap"]) == 400
    blo, bhi = res.params["ci_binomial"]
    from scipy.stats import binomtest

    exact = binomtest(int(round(res.value * 100)), 100).proportion_ci(0.95, method="exact")
    assert (blo, bhi) == pytest.approx((exact.low, exact.high), abs=1e-9)
    slo, shi = res.params["ci_bootstrap"]
    assert (lo, hi) == (min(slo, blo), max(shi, bhi))
    off = _audit(real, synth, None)
    assert off.ci == pytest.approx((blo, bhi))
    assert "Clopper-Pearson" in off.ci_method and "bootstrap" not in off.ci_method


def test_ci_of_an_all_copies_set_is_not_a_point() -> None:
    """Every resample of an all-flagged set is all flagged: the bootstrap interval is [1, 1];
    the reported CI keeps the exact interval's lower bound (1 - 3.7/n at n = 100)."""
    real = np.linspace(0.3, 0.8, 150)
    res = _audit(real, np.full(100, 0.99), Bootstrap(replicates=200))
    assert res.value == 1.0 and res.params["ci_bootstrap"] == [1.0, 1.0]
    assert res.ci[1] == 1.0 and res.ci[0] == pytest.approx(0.025 ** (1 / 100), abs=1e-9)


def test_replicates_recompute_the_threshold_from_resampled_real_values() -> None:
    real = np.array([0.1, 0.2, 0.3, 0.9])
    synth = np.array([0.5, 0.5, 0.5, 0.5])
    boot = Bootstrap(replicates=300, seed=0)
    reps = flagged_fraction_replicates(real, synth, 0.5, boot)
    # k = ceil(0.5 * 5) = 3rd smallest of the resample: 0.9 in some resamples (nothing flagged),
    # below 0.5 in others (everything flagged); a fixed threshold would give one value only.
    assert set(np.unique(reps)) == {0.0, 1.0}
    assert reps.tolist() == flagged_fraction_replicates(real, synth, 0.5, boot).tolist()


# ------------------------------------------------------------------------------- phantoms


def _phantom_sets(name: str, n: int = 960, seed: int = 0):
    prepared = prepare_dataset(name, size=32, n=n, seed=seed, use_cache=False)
    train, test = prepared.train.images, prepared.test.images
    patients = np.array([s.split(":")[0] for s in prepared.test.sources])
    ids = np.unique(patients)
    calib = torch.from_numpy(np.isin(patients, ids[::2]))
    return train, test[calib], test[~calib]


def _copier(train: torch.Tensor, n: int, *, noise: float = 0.02, flip: bool = False,
            shift: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A memorising generator: training images plus N(0, noise^2), randomly flipped and/or
    rolled by up to ``shift`` px (the border wraps around: junk the audit must not need)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(len(train), (n,), generator=g)
    x = train[src] + noise * torch.randn((n, *train.shape[1:]), generator=g)
    for i in range(n):
        if flip and bool(torch.rand((), generator=g) < 0.5):
            x[i] = torch.flip(x[i], dims=(-1,))
        if shift:
            dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
            x[i] = torch.roll(x[i], shifts=(dy, dx), dims=(-2, -1))
    return x.clamp(-1, 1), src


@pytest.mark.parametrize("name", list(PRESETS))
def test_copier_is_flagged_and_a_fresh_real_sample_is_not(name: str) -> None:
    train, real, fresh = _phantom_sets(name)
    copies, src = _copier(train, len(fresh))
    fast = Bootstrap(replicates=200)
    cop = compute_mem(real, copies, train, boot=fast)
    new = compute_mem(real, fresh, train, boot=fast)
    assert cop.value >= 0.9, (name, cop.value, cop.params["threshold"])
    assert new.value <= 0.05, (name, new.value, new.params["threshold"])
    assert cop.params["median_ratio"] > new.params["median_ratio"]
    # The partner of a flagged copy is the image it was copied from (TRAIN, not REAL, searched).
    flagged = cop.params["flagged"]
    hits = [src[s].item() == t for s, t in zip(flagged["synth_index"], flagged["train_index"])]
    assert np.mean(hits) >= 0.9, name
    assert cop.params["by_measure"]["pearson"]["fraction"] >= 0.9
    assert new.params["by_measure"]["pearson"]["fraction"] <= 0.05


@pytest.mark.parametrize("name", ["chest", "pelvic"])
def test_flipped_and_shifted_copies_need_transforms(name: str) -> None:
    train, real, fresh = _phantom_sets(name, n=300)
    copies, _ = _copier(train, 40, flip=True, shift=2, seed=1)
    fast = Bootstrap(replicates=100)
    views = "flip,shift2"
    with_views = compute_mem(real, copies, train, transforms=views, boot=fast, pearson=False)
    assert with_views.value >= 0.9, with_views.value
    assert compute_mem(real, fresh[:40], train, transforms=views, boot=fast, pearson=False).value <= 0.05
    # The documented blind spot: without the transforms most of these copies pass as new images.
    assert compute_mem(real, copies, train, boot=fast, pearson=False).value < 0.5


def test_floor_real_halves_score_near_the_ideal_rate() -> None:
    """REAL against a disjoint real sample of the same patients' distribution: the floor."""
    train, real, fresh = _phantom_sets("abdomen", n=960)
    res = compute_mem(real, fresh, train, boot=Bootstrap(replicates=100))
    assert res.value <= max(0.05, 3 * res.params["ideal_rate"])


# ------------------------------------------------------------------------------- bad input


def test_bad_input_is_one_clear_error() -> None:
    rng = np.random.default_rng(0)
    train = torch.from_numpy(rng.uniform(-1, 1, (6, 1, 16, 16)).astype(np.float32))
    real = torch.from_numpy(rng.uniform(-1, 1, (5, 1, 16, 16)).astype(np.float32))
    synth = torch.from_numpy(rng.uniform(-1, 1, (4, 1, 16, 16)).astype(np.float32))
    with pytest.raises(UsageError, match="--train"):
        compute_mem(real, synth, None)
    with pytest.raises(InputError, match="--train.*sizes must match"):
        compute_mem(real, synth, train[:, :, :15])
    with pytest.raises(InputError, match="REAL is the same images as TRAIN"):
        compute_mem(real, synth, real.clone())
    with pytest.raises(InputError, match="REAL is contained in TRAIN"):
        compute_mem(real, synth, torch.cat([train, real]))
    with pytest.raises(UsageError, match="mem-quantile"):
        compute_mem(real, synth, train, quantile=1.0)
    with pytest.raises(UsageError, match="central crop"):
        compute_mem(real, synth, train, transforms="shift3")
    # A partial overlap is allowed and recorded.
    res = compute_mem(real, synth, torch.cat([train, real[:2]]), boot=None)
    assert res.params["n_real_in_train"] == 2


# ------------------------------------------------------------------------------- the blind spot


@pytest.mark.parametrize("name", list(PRESETS))
def test_mem_catches_what_ds_and_fds_cannot(name: str) -> None:
    """A generator that returns whole training patients (exact copies) looks like new real data
    to DS and FDS, which compare with the held-out set: both stay at the real-vs-real floor (the
    margins of tests/test_metrics_on_phantoms.py). mem, which compares with TRAIN, flags it."""
    from genbench.metrics.ds import compute_ds
    from genbench.metrics.fds import compute_fds

    prepared = prepare_dataset(name, size=32, n=960, seed=0, use_cache=False)
    train, test = prepared.train.images, prepared.test.images
    held = np.array([s.split(":")[0] for s in prepared.test.sources])
    ids = np.unique(held)
    calib = torch.from_numpy(np.isin(held, ids[::2]))
    real, fresh = test[calib], test[~calib]
    # The copier reproduces the set's structure too: as many whole patients as FRESH has.
    owners = np.array([s.split(":")[0] for s in prepared.train.sources])
    picked = np.random.default_rng(0).choice(np.unique(owners), len(ids[1::2]), replace=False)
    copies = train[torch.from_numpy(np.isin(owners, picked))]

    ds_floor, ds_copy = compute_ds(real, fresh).value, compute_ds(real, copies).value
    fds_floor, fds_copy = (compute_fds(real, s, seeds=(0,)).value for s in (fresh, copies))
    assert ds_copy < ds_floor + 0.25 and ds_copy < 0.6, (ds_floor, ds_copy)
    assert fds_copy < 2.0 and fds_floor < 2.0, (fds_floor, fds_copy)
    fast = Bootstrap(replicates=100)
    assert compute_mem(real, copies, train, boot=fast).value >= 0.9
    assert compute_mem(real, fresh, train, boot=fast).value <= 0.05
