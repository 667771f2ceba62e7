"""Every metric's bootstrap replicates against a brute-force reference on a tiny case: replicate i
recomputed from scratch on the images that replicate draws (``genbench.stats.resample``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench import stats
from genbench.metrics import ds as dsm
from genbench.metrics import fds as fdsm
from genbench.metrics import fidelity as fd
from genbench.metrics.inception import InceptionFeatures
from genbench.stats import REAL, SEEDS, SYNTH, Bootstrap, replicate_rng, resample

try:
    from _inception_fixtures import inception_material
except ImportError:
    from tests._inception_fixtures import inception_material  # noqa: F401

SEED = 11


def _feats(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ a + shift).astype(np.float32)


@pytest.mark.parametrize("n_r,n_s,d", [(14, 17, 40), (60, 50, 8)])  # n < d (Gram path) and n > d
def test_fid_replicates_equal_recomputed_fid(n_r: int, n_s: int, d: int) -> None:
    r, s = _feats(n_r, d, 1) + 5.0, _feats(n_s, d, 2, shift=0.4) + 5.0  # offset: the centring matters
    boot = Bootstrap(replicates=6, seed=SEED)
    reps = fd.fid_replicates(r, s, boot)
    brute = [fd.frechet_distance(r[resample(n_r, SEED, i, REAL)], s[resample(n_s, SEED, i, SYNTH)])
             for i in range(6)]
    np.testing.assert_allclose(reps, brute, rtol=1e-7)
    assert len(set(np.round(brute, 6))) == 6  # the resamples differ


def test_kid_replicates_equal_recomputed_mmd() -> None:
    x, y = _feats(12, 16, 3, shift=0.3), _feats(12, 16, 4)
    boot = Bootstrap(replicates=5, seed=SEED)
    reps = fd.kid_replicates(x, y, boot)
    for i in range(5):
        xi, yi = x[resample(12, SEED, i, SYNTH)], y[resample(12, SEED, i, REAL)]
        # one subset of the whole (resampled) set = the unbiased MMD^2 over all positions
        mean, _ = fd.kernel_inception_distance(xi, yi, subsets=1, subset_size=12, seed=0)
        assert reps[i] == pytest.approx(mean, rel=1e-9, abs=1e-12)
    # unequal sizes, against the estimator written out with explicit loops over positions
    x, y = _feats(7, 5, 5), _feats(9, 5, 6, shift=0.5)
    reps = fd.kid_replicates(x, y, Bootstrap(replicates=3, seed=SEED))
    k = lambda a, b: (a @ b / 5 + 1.0) ** 3
    for i in range(3):
        xi, yi = x[resample(7, SEED, i, SYNTH)].astype(float), y[resample(9, SEED, i, REAL)].astype(float)
        xx = sum(k(xi[p], xi[q]) for p in range(7) for q in range(7) if p != q) / (7 * 6)
        yy = sum(k(yi[p], yi[q]) for p in range(9) for q in range(9) if p != q) / (9 * 8)
        xy = sum(k(xi[p], yi[q]) for p in range(7) for q in range(9)) / (7 * 9)
        assert reps[i] == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def test_is_replicates_equal_recomputed_is() -> None:
    logits = 3 * _feats(23, 30, 7)
    boot = Bootstrap(replicates=4, seed=SEED)
    reps = fd.is_replicates(logits, boot, splits=3, seed=2020)
    for i in range(4):
        mean, _ = fd.inception_score(logits[resample(23, SEED, i, SYNTH)], splits=3, seed=2020)
        assert reps[i] == pytest.approx(mean, rel=1e-12)


def test_precision_recall_replicates_equal_recomputed_shares() -> None:
    s, r = _feats(30, 6, 8, shift=0.4), _feats(25, 6, 9)
    in_real, in_synth = fd.manifold_indicators(s, r)
    boot = Bootstrap(replicates=5, seed=SEED)
    prec = fd.share_replicates(in_real, boot, SYNTH)
    rec = fd.share_replicates(in_synth, boot, REAL)
    for i in range(5):
        # precision of resampled synthetic images against the full real manifold, and vice versa
        p, _ = fd.precision_recall(s[resample(30, SEED, i, SYNTH)], r)
        _, rc = fd.precision_recall(s, r[resample(25, SEED, i, REAL)])
        assert prec[i] == pytest.approx(p, abs=1e-12) and rec[i] == pytest.approx(rc, abs=1e-12)
    assert 0 < in_real.mean() < 1 and 0 < in_synth.mean() < 1


@pytest.mark.parametrize("estimator,smoothing", [("laplace", 1.0), ("laplace", 0.5), ("epsilon", 1e-10),
                                                 ("epsilon", 1e-3)])
def test_ds_replicates_equal_recomputed_ds(estimator: str, smoothing: float) -> None:
    rng = np.random.default_rng(0)
    near_r = np.concatenate([rng.uniform(0.3, 0.9, 40), [-0.1, 1.0, 1.0 + 1e-9, 0.5]])  # edges and outside
    near_s = rng.beta(5, 2, 31)
    boot = Bootstrap(replicates=7, seed=SEED)
    reps = dsm.ds_replicates(near_r, near_s, boot, bins=10, smoothing=smoothing, estimator=estimator)
    for i in range(7):
        hist = {"bins": 10, "value_range": (0.0, 1.0), "smoothing": smoothing, "estimator": estimator}
        p, _ = dsm.smoothed_histogram(near_r[resample(len(near_r), SEED, i, REAL)], **hist)
        q, _ = dsm.smoothed_histogram(near_s[resample(31, SEED, i, SYNTH)], **hist)
        assert reps[i] == pytest.approx(dsm.kl_divergence(p, q), rel=1e-10)


def test_fds_replicates_equal_recomputed_kl() -> None:
    rng = np.random.default_rng(1)
    n_r, n_s = 15, 12
    embs = [np.vstack([rng.normal(size=(n_r, 2)) * [1.0, 2.0] + 10, rng.normal(size=(n_s, 2)) + [10.5, 9]])
            for _ in range(3)]
    boot = Bootstrap(replicates=6, seed=SEED)
    reps = fdsm.fds_replicates(embs, n_r, boot)
    for i in range(6):
        ir, is_ = resample(n_r, SEED, i, REAL), resample(n_s, SEED, i, SYNTH)
        seeds = replicate_rng(SEED, i, SEEDS).integers(0, 3, 3)
        kls = [fdsm.fds_from_embedding(np.vstack([embs[k][:n_r][ir], embs[k][n_r:][is_]]), n_r) for k in seeds]
        assert reps[i] == pytest.approx(np.mean(kls), rel=1e-9)
    one = fdsm.fds_replicates(embs[:1], n_r, Bootstrap(replicates=2, seed=SEED))
    ir, is_ = resample(n_r, SEED, 1, REAL), resample(n_s, SEED, 1, SYNTH)
    assert one[1] == pytest.approx(fdsm.fds_from_embedding(np.vstack([embs[0][:n_r][ir], embs[0][n_r:][is_]]), n_r))


def test_metric_results_carry_the_interval_and_its_method() -> None:
    boot = Bootstrap(replicates=50, seed=SEED)
    s = InceptionFeatures(_feats(30, 64, 1, shift=0.2), 3 * _feats(30, 1008, 2))
    r = InceptionFeatures(_feats(30, 64, 3), 3 * _feats(30, 1008, 4))
    out = fd.metrics_from_features(s, r, metrics={"is", "fid", "kid", "precision", "recall"}, boot=boot)
    for name, res in out.items():
        assert res.status == "ok", res.reason
        ci = getattr(res, "ci", None) or res.params["ci"]
        assert ci[0] <= res.value <= ci[1] or name == "kid", (name, ci, res.value)
        assert ci[0] < ci[1]
        assert res.params["ci_level"] == 0.95 and res.params["bootstrap_replicates"] == 50
        assert "recentred" in res.params["ci_method"]
        assert len(res.extra["bootstrap"]) == 50
    assert out["precision"].params["ci"][1] <= 1.0 if "ci" in out["precision"].params else True
    # no bootstrap: no interval, no cost
    bare = fd.metrics_from_features(s, r, metrics={"fid"})
    assert "bootstrap" not in bare["fid"].extra


def test_fid_interval_covers_the_expected_value_at_this_size() -> None:
    """Recentring matters: FID's bootstrap distribution sits well above the estimate (duplicates
    shrink the covariances), so the plain percentile interval would usually miss E[FID_N]."""
    d, n = 12, 40
    rng = np.random.default_rng(5)
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    draw = lambda shift: rng.normal(size=(n, d)) @ a + shift
    expected = np.mean([fd.frechet_distance(draw(0.0), draw(0.15)) for _ in range(400)])
    boot = Bootstrap(replicates=200, seed=3)
    hits = plain_hits = 0
    trials = 40
    for _ in range(trials):
        r, s = draw(0.0), draw(0.15)
        v = fd.frechet_distance(r, s)
        reps = fd.fid_replicates(r, s, boot)
        lo, hi = stats.percentile_ci(v, reps, 0.95)
        plo, phi = stats.percentile_ci(v, reps, 0.95, recentre=False)
        hits += lo <= expected <= hi
        plain_hits += plo <= expected <= phi
    assert hits >= 0.8 * trials
    assert plain_hits < hits


def test_ds_and_fds_results_carry_intervals() -> None:
    rng = np.random.default_rng(2)
    x = torch.from_numpy(np.tanh(rng.normal(size=(20, 1, 12, 12))).astype(np.float32))
    y = torch.from_numpy(np.tanh(1.3 * rng.normal(size=(18, 1, 12, 12))).astype(np.float32))
    boot = Bootstrap(replicates=40, seed=0)
    res = dsm.compute_ds(x, y, bins=10, boot=boot)
    ci = getattr(res, "ci", None) or res.params["ci"]
    assert 0.0 <= ci[0] <= ci[1] and len(res.extra["bootstrap"]) == 40
    f = fdsm.compute_fds(x, y, seeds=(0, 1), n_jobs=1, boot=boot)
    ci = getattr(f, "ci", None) or f.params["ci"]
    assert ci[0] <= f.value <= ci[1]
    assert f.params["ci_seed_level"].startswith("t-SNE seeds resampled")
    assert len(f.extra["embeddings"]) == 2


def test_options_reach_the_metrics_through_the_pipeline_and_cli(tmp_path) -> None:
    from genbench.cli import main
    from genbench.imageset import ImageSet
    from genbench.io import write_png_folder
    from genbench.metrics.pipeline import EvalOptions, evaluate

    rng = np.random.default_rng(4)
    real = torch.from_numpy(np.tanh(rng.normal(size=(24, 1, 12, 12))).astype(np.float32))
    synth = torch.from_numpy(np.tanh(1.5 * rng.normal(size=(24, 1, 12, 12))).astype(np.float32))
    wide = evaluate(ImageSet(real), ImageSet(synth), EvalOptions(metrics=("ds",), bootstrap=60, device="cpu"))
    narrow = evaluate(ImageSet(real), ImageSet(synth), EvalOptions(metrics=("ds",), bootstrap=60, ci=0.5,
                                                                   device="cpu"))
    w, n = wide.metrics["ds"], narrow.metrics["ds"]
    np.testing.assert_array_equal(w.extra["bootstrap"], n.extra["bootstrap"])  # same replicates
    assert w.ci[0] < n.ci[0] <= n.ci[1] < w.ci[1] and n.params["ci_level"] == 0.5
    fds = evaluate(ImageSet(real), ImageSet(synth), EvalOptions(metrics=("fds",), bootstrap=30, fds_seeds=2,
                                                                device="cpu")).metrics["fds"]
    assert fds.ci is not None and fds.ci[0] <= fds.value <= fds.ci[1] and len(fds.extra["bootstrap"]) == 30
    eps = evaluate(ImageSet(real), ImageSet(synth), EvalOptions(metrics=("ds",), ds_smoothing="epsilon",
                                                                bootstrap=0, device="cpu"))
    assert eps.metrics["ds"].params["estimator"] == "epsilon" and eps.metrics["ds"].ci is None
    assert eps.metrics["ds"].value != w.value
    write_png_folder(real, tmp_path / "r")
    write_png_folder(synth, tmp_path / "s")
    out = tmp_path / "m.json"
    rc = main(["metrics", str(tmp_path / "r"), str(tmp_path / "s"), "--metrics", "ds", "--ci", "0.9",
               "--bootstrap", "25", "--ds-smoothing", "epsilon", "--json", str(out), "-q"])
    assert rc in (0, None)
    entry = __import__("json").loads(out.read_text())["metrics"]["ds"]
    assert entry["ci_level"] == 0.9 and len(entry["bootstrap"]) == 25 and entry["params"]["estimator"] == "epsilon"
    assert entry["ci"][0] <= entry["value"] <= entry["ci"][1]


def test_every_registered_metric_that_runs_carries_an_interval(inception_material) -> None:
    """The registry's rule: a metric that returns a value returns its CI too (or says in ci_method
    why it has none)."""
    from genbench.imageset import ImageSet
    from genbench.metrics.pipeline import EvalOptions, evaluate
    from genbench.metrics.registry import REGISTRY

    m = inception_material
    real = ImageSet(torch.from_numpy(m.real_u8.astype(np.float32) / 127.5 - 1)[:, None])
    synth = ImageSet(torch.from_numpy(m.synth_u8.astype(np.float32) / 127.5 - 1)[:, None])
    opts = EvalOptions(metrics=REGISTRY.names(), inception_weights=m.weights, cache_dir=m.cache_dir,
                       bootstrap=20, device="cpu", fds_seeds=1)
    rep = evaluate(real, synth, opts, train=real)
    ran = {k: r for k, r in rep.requested().items() if r.status == "ok"}
    assert {"is", "fid", "kid", "precision", "recall", "fds", "ds"} <= set(ran)
    for name, r in ran.items():
        assert r.ci is not None or (r.ci_method and "no interval" in r.ci_method), name
        if r.ci is not None:
            assert r.ci[0] <= r.ci[1] and r.params["ci_level"] == 0.95, name
