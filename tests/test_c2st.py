"""The machine Turing test (classifier two-sample test) on phantoms: behaviour, not numbers.

Small on purpose (16 px, 60 images per class, 5 folds): one cross-validation trains five tiny
networks in a few seconds on one core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from turing_helpers import noisy, phantom_set

from genbench.errors import InputError, UsageError
from genbench.imageset import ImageSet
from genbench.metrics import c2st as c2st_mod
from genbench.metrics.c2st import C2STConfig, balanced_folds, c2st, c2st_images
from genbench.turing.stats import clopper_pearson

SIZE, N = 16, 60


@pytest.fixture(scope="module")
def halves():
    """Two disjoint random halves of one phantom set (the same patients in both)."""
    pool = phantom_set(2 * N, size=SIZE, seed=11).images
    perm = torch.randperm(2 * N, generator=torch.Generator().manual_seed(0))
    return pool[perm[:N]], pool[perm[N:]]


def test_real_vs_real_is_indistinguishable(halves):
    a, b = halves
    res = c2st_images(a, b, seed=0)
    lo, hi = res.accuracy.ci
    assert lo <= 0.5 <= hi, (res.accuracy, res.fold_accuracies)
    assert res.accuracy.n == 2 * N and res.n_per_class == N
    assert res.accuracy.ci == clopper_pearson(res.accuracy.k, 2 * N)
    assert res.p_binomial > 0.05


def test_real_vs_noisy_is_told_apart(halves):
    a, _ = halves
    synth = noisy(phantom_set(N, size=SIZE, seed=12), 0.3).images
    res = c2st_images(a, synth, seed=0)
    assert res.accuracy.value >= 0.95
    assert res.sensitivity.value >= 0.9 and res.specificity.value >= 0.9
    assert res.auc[0] >= 0.95
    # Definitions: positive = synthetic, call = P(synthetic) > 0.5, every image predicted once.
    p, y = res.probabilities, res.labels
    assert len(p) == 2 * N and set(np.unique(y)) == {0, 1}
    assert res.sensitivity.value == pytest.approx(np.mean(p[y == 1] > 0.5))
    assert res.specificity.value == pytest.approx(np.mean(p[y == 0] <= 0.5))
    assert res.accuracy.value == pytest.approx(np.mean((p > 0.5) == (y == 1)))


def test_permutation_p_value(halves):
    a, b = halves
    cfg = C2STConfig(folds=3, epochs=3, permutations=4)
    synth = noisy(phantom_set(N, size=SIZE, seed=12), 0.3).images
    res = c2st_images(a[:30], synth[:30], cfg, seed=1)
    assert len(res.permutation_accuracies) == 4
    # Labels shuffled at random carry no signal: the networks stay near chance.
    assert max(res.permutation_accuracies) < 0.8 <= res.accuracy.value
    assert res.p_permutation == pytest.approx(1 / 5)  # the smallest p with 4 permutations
    null = c2st_images(a[:30], b[:30], cfg, seed=1)
    count = sum(x >= null.accuracy.value for x in null.permutation_accuracies)
    assert null.p_permutation == pytest.approx((1 + count) / 5)


def test_deterministic_for_a_seed(halves):
    a, _b = halves
    synth = noisy(phantom_set(N, size=SIZE, seed=12), 0.05).images
    cfg = C2STConfig(epochs=2)
    threads = torch.get_num_threads()
    r1 = c2st_images(a, synth, cfg, seed=3)
    r2 = c2st_images(a, synth, cfg, seed=3)
    np.testing.assert_array_equal(r1.probabilities, r2.probabilities)
    r3 = c2st_images(a, synth, cfg, seed=4)
    assert not np.array_equal(r1.probabilities, r3.probabilities)
    assert torch.get_num_threads() == threads  # restored after the single-threaded training


def test_balanced_folds():
    rng = np.random.default_rng(0)
    fold = balanced_folds(23, 5, rng)
    assert fold.shape == (46,)
    for j in range(5):
        real, synth = np.sum(fold[:23] == j), np.sum(fold[23:] == j)
        assert real == synth and real in (4, 5)
    with pytest.raises(InputError):
        balanced_folds(3, 5, rng)


def test_size_matching_and_held_out_predictions(monkeypatch, halves):
    a, b = halves
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_train_predict = c2st_mod._train_predict

    def spy(x, y, train, test, cfg, seed, device):
        seen.append((train.copy(), test.copy()))
        assert len(set(train) & set(test)) == 0  # never trained on what it predicts
        return real_train_predict(x, y, train, test, cfg, seed, device)

    monkeypatch.setattr(c2st_mod, "_train_predict", spy)
    res = c2st_images(a[:40], b[:25], C2STConfig(epochs=1), seed=0)
    assert res.n_per_class == 25 and res.n_real == 40 and res.n_synth == 25
    tested = np.concatenate([t for _, t in seen])
    assert sorted(tested.tolist()) == list(range(50))  # each image predicted exactly once
    for train, test in seen:
        # balanced folds: as many real (rows < 25) as synthetic rows in train and test
        assert np.sum(test < 25) == np.sum(test >= 25)
        assert np.sum(train < 25) == np.sum(train >= 25)


def test_errors_and_metric_result(halves):
    a, b = halves
    with pytest.raises(InputError, match="at least 10 images per set"):
        c2st_images(a[:9], b, seed=0)
    with pytest.raises(InputError, match="one size"):
        c2st_images(a, torch.zeros(20, 1, 8, 8), seed=0)
    with pytest.raises(UsageError):
        C2STConfig(folds=1)
    r = c2st(ImageSet(a[:20]), ImageSet(b[:20]), C2STConfig(epochs=1), seed=0)
    assert r.name == "c2st" and r.status == "ok"
    assert r.value == pytest.approx(r.params["accuracy"]["value"])
    assert r.ci == pytest.approx(clopper_pearson(r.params["accuracy"]["k"], 40))
    assert r.to_json()["ci_level"] == 0.95 and "Clopper-Pearson" in r.ci_method
    assert r.params["folds"] == 5 and r.params["method"] == "c2st-cnn/1"


def test_definitions_with_a_fixed_classifier(monkeypatch, halves):
    """Bookkeeping against hand counts: a 'classifier' that calls every image synthetic except
    the first real row of each fold: sensitivity 1, specificity 4 folds x 1 / 20."""
    a, b = halves

    def fixed(x, y, train, test, cfg, seed, device):
        p = np.full(len(test), 0.9)
        real_rows = np.flatnonzero(test < 20)
        p[real_rows[:1]] = 0.1
        return p

    monkeypatch.setattr(c2st_mod, "_train_predict", fixed)
    res = c2st_images(a[:20], b[:20], C2STConfig(folds=4), seed=0)
    assert res.sensitivity.value == 1.0
    assert res.specificity.value == pytest.approx(4 / 20)
    assert res.accuracy.value == pytest.approx(24 / 40)
    assert (res.sensitivity.k, res.sensitivity.n, res.specificity.k, res.specificity.n) == (20, 20, 4, 20)
    assert res.fold_accuracies == pytest.approx([6 / 10] * 4)


def test_prediction_does_not_depend_on_the_batch(halves):
    """Each image's probability is the same whether it is predicted alone or with others
    (the network predicts with fixed statistics, not those of the test batch)."""
    a, b = halves
    x = torch.cat([a[:20], b[:20]])
    y = torch.cat([torch.zeros(20), torch.ones(20)])
    train = np.r_[np.arange(0, 15), np.arange(20, 35)]
    cfg = C2STConfig(epochs=2)
    together = c2st_mod._train_predict(x, y, train, np.r_[15:20, 35:40], cfg, 5, "cpu")
    alone = c2st_mod._train_predict(x, y, train, np.array([15]), cfg, 5, "cpu")
    assert alone[0] == pytest.approx(together[0], abs=1e-6)


def test_through_the_registry_with_floor_and_cli(tmp_path, capsys):
    import json

    import genbench
    from genbench.cli import main
    from genbench.io import write_png_folder

    real = phantom_set(2 * N, size=SIZE, seed=11)
    synth = noisy(phantom_set(N, size=SIZE, seed=12), 0.3)
    report = genbench.evaluate(real, synth, metrics="machine-turing", floor=True, c2st_epochs=4)
    r = report.metrics["c2st"]
    assert r.status == "ok" and r.value >= 0.95 and r.ci is not None
    assert r.params["epochs"] == 4 and r.params["n_per_class"] == N
    assert r.extra["bootstrap"].shape == (1000,)  # held-out replicates for the paired model test
    f = report.floor["c2st"]  # the real-vs-real floor at the same set size
    assert f.status == "ok" and f.ci[0] <= 0.5 <= f.ci[1]
    # Too few images: 'unavailable' with the reason, the other metrics unaffected.
    small = genbench.evaluate(real.subset(list(range(6))), synth.subset(list(range(6))),
                              metrics="c2st")
    assert small.metrics["c2st"].status == "unavailable"
    assert "at least 10 images per set" in small.metrics["c2st"].reason
    # The CLI options reach the metric.
    write_png_folder(real.subset(list(range(N))), tmp_path / "r", bit_depth=16)
    write_png_folder(synth, tmp_path / "s", bit_depth=16)
    rc = main(["metrics", str(tmp_path / "r"), str(tmp_path / "s"), "--metrics", "c2st",
               "--c2st-epochs", "2", "--c2st-folds", "3", "--json", str(tmp_path / "m.json"), "-q"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "m.json").read_text())["metrics"]["c2st"]
    assert doc["params"]["folds"] == 3 and doc["params"]["epochs"] == 2 and doc["ci"] is not None
    rc = main(["metrics", str(tmp_path / "r"), str(tmp_path / "s"), "--metrics", "c2st",
               "--c2st-folds", "1"])
    assert rc == 2 and "--c2st-folds" in capsys.readouterr().err


def test_held_out_replicates_for_paired_tests(monkeypatch, halves):
    """Replicates resample the real and the synthetic held-out calls on the streams the paired
    model test shares; checked against a direct computation with genbench.stats' indices."""
    from genbench.stats import REAL, SYNTH, Bootstrap, resample

    a, b = halves

    def fixed(x, y, train, test, cfg, seed, device):
        return np.where(test % 3 == 0, 0.8, 0.2)  # some right, some wrong, in both classes

    monkeypatch.setattr(c2st_mod, "_train_predict", fixed)
    res = c2st_images(a[:20], b[:20], C2STConfig(folds=4), seed=0)
    boot = Bootstrap(replicates=50, seed=7)
    reps = c2st_mod.held_out_replicates(res, boot)
    right = (res.probabilities > 0.5) == (res.labels == 1)
    for i in (0, 17, 49):
        ir, is_ = resample(20, 7, i, REAL), resample(20, 7, i, SYNTH)
        assert reps[i] == pytest.approx((right[:20][ir].mean() + right[20:][is_].mean()) / 2)
    assert abs(reps.mean() - res.accuracy.value) < 0.05


def test_patients_stay_in_one_fold():
    """Two sets of different patients (10 slices each) are the same distribution: with folds by
    patient c2st stays near chance; folds by image let it recognise the patients."""
    from genbench.data import prepare_dataset
    from genbench.metrics.c2st import patient_groups

    data = prepare_dataset("pelvic", size=SIZE, n=600, seed=0)
    groups = patient_groups(data.train.sources)
    assert groups is not None and len(set(groups)) >= 40
    assert patient_groups(["a/b.png", "p1:s0"]) is None and patient_groups([]) is None
    patients = sorted(set(groups))
    half = set(patients[: len(patients) // 2])
    in_a = np.array([g in half for g in groups])
    a, b = data.train.subset(np.flatnonzero(in_a)), data.train.subset(np.flatnonzero(~in_a))
    res = c2st(a, b, C2STConfig(epochs=6), seed=0)
    assert res.params["folds_by_patient"] is True
    assert abs(res.value - 0.5) < 0.2, (res.value, res.params["fold_accuracies"])
    # Intervals count patients, not slices: the effective sample size is below the slice count.
    acc = res.params["accuracy"]
    assert acc["n_eff"] < acc["n"]
    # The same sets with the patients hidden: split by image, the patients give the sets away.
    hidden = c2st(ImageSet(a.images), ImageSet(b.images), C2STConfig(epochs=6), seed=0)
    assert hidden.params["folds_by_patient"] is False and hidden.ci[0] > 0.5, hidden.value
    assert "n_eff" not in hidden.params["accuracy"]
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(12), 5)
    fold = balanced_folds(60, 5, rng, (g, None))
    for p in range(12):
        assert len(set(fold[:60][g == p])) == 1
    counts = np.bincount(fold[:60], minlength=5)
    assert counts.max() - counts.min() <= 5
    with pytest.raises(InputError, match="at least 5 patients"):
        balanced_folds(60, 5, rng, (np.repeat(np.arange(3), 20), None))


def test_no_patient_on_both_sides_of_a_fold(monkeypatch):
    """Structural check through the public entry point: with patient-named sources, no patient
    has slices in both the training and the held-out part of any fold (either class)."""
    from genbench.data import prepare_dataset

    data = prepare_dataset("pelvic", size=SIZE, n=200, seed=0)
    n = min(len(data.train) // 2, 80)
    a = data.train.subset(list(range(n)))
    b = data.train.subset(list(range(len(data.train) - n, len(data.train))))
    patient = [s.split(":")[0] for s in a.sources] + [s.split(":")[0] for s in b.sources]
    seen = []

    def spy(x, y, train, test, cfg, seed, device):
        seen.append((train, test))
        return np.full(len(test), 0.5)

    monkeypatch.setattr(c2st_mod, "_train_predict", spy)
    res = c2st(a, b, seed=0)
    assert res.params["folds_by_patient"] is True and len(seen) == 5
    for train, test in seen:
        for lo, hi in ((0, n), (n, 2 * n)):
            held = {patient[i] for i in test if lo <= i < hi}
            trained = {patient[i] for i in train if lo <= i < hi}
            assert held and not held & trained
