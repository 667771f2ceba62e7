"""The metric pipeline: shared features, the real-vs-real floor, failures, schema, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

try:
    from _inception_fixtures import canonical, inception_material
except ImportError:
    from tests._inception_fixtures import canonical, inception_material  # noqa: F401

from genbench.errors import UsageError, WeightsUnavailableError
from genbench.imageset import ImageSet
from genbench.metrics import inception as inc
from genbench.metrics.pipeline import EvalOptions, evaluate, floor_split, parse_metric_names
from genbench.metrics.registry import REGISTRY

METRIC_NAMES = REGISTRY.default_names()

INCEPTION = ("is", "fid", "kid", "precision", "recall")


@pytest.fixture()
def sets(inception_material):
    real = ImageSet(canonical(inception_material.real_u8), meta={"path": str(inception_material.real_dir)})
    synth = ImageSet(canonical(inception_material.synth_u8), meta={"path": str(inception_material.synth_dir)})
    return real, synth


@pytest.fixture()
def forward_counter(monkeypatch):
    """Counts images that really go through the network (cache hits and reuse don't)."""
    counts = {"images": 0}
    original = inc.InceptionFeatureExtractor.extract

    def counting(self, images, progress=None):
        counts["images"] += len(images)
        return original(self, images, progress)

    monkeypatch.setattr(inc.InceptionFeatureExtractor, "extract", counting)
    return counts


def test_parse_metric_names():
    assert parse_metric_names("is,prc") == ("is", "precision", "recall")
    assert parse_metric_names("all") == METRIC_NAMES
    assert parse_metric_names(" FID , ds ") == ("fid", "ds")
    with pytest.raises(UsageError, match=r"unknown metric name\(s\): bogus.*valid names: is, fid"):
        parse_metric_names("fid,bogus")
    with pytest.raises(UsageError, match="no metric selected"):
        parse_metric_names(",")


def test_floor_split_is_disjoint_and_seeded():
    a, b = floor_split(21, seed=3)
    assert len(a) == len(b) == 10 and not set(a) & set(b)
    a2, b2 = floor_split(21, seed=3)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    assert not np.array_equal(floor_split(21, seed=4)[0], a)


def test_evaluate_with_floor_shares_features_and_caches(sets, inception_material, tmp_path, forward_counter):
    real, synth = sets
    opts = EvalOptions(metrics=INCEPTION, inception_weights=inception_material.weights, device="cpu",
                       floor=True, cache_dir=inception_material.cache_dir, seed=1)
    before = forward_counter["images"]
    report = evaluate(real, synth, opts)
    # At most one pass over each set; the floor reuses REAL's features.
    assert forward_counter["images"] - before <= len(real) + len(synth)
    assert all(report.metrics[m].status == "ok" for m in INCEPTION), report.not_ok()
    assert all(report.floor[m].status == "ok" for m in INCEPTION)
    assert report.floor["fid"].n_real == report.floor["fid"].n_synth == len(real) // 2
    assert report.floor["fid"].params["floor"]["split_seed"] == 1
    # The floor (real vs real) is closer than synth vs real on these deliberately different sets.
    assert report.floor["fid"].value < report.metrics["fid"].value
    assert report.metrics["fds"].status == "unavailable" and "not requested" in report.metrics["fds"].reason

    doc = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert set(doc) >= {"genbench_version", "real", "synth", "metrics", "floor", "options"}
    assert set(doc["real"]) >= {"path", "n", "sha256", "skipped"}
    assert doc["real"]["sha256"] == real.sha256() and doc["synth"]["n"] == len(synth)
    assert set(doc["metrics"]) == set(REGISTRY.names()) == set(doc["floor"])  # every registered metric
    for m in INCEPTION:
        assert set(doc["metrics"][m]) >= {"value", "std", "status", "reason", "params", "elapsed_s"}
    assert doc["metrics"]["kid"]["params"]["subset_size"] == len(real)
    assert doc["options"]["metrics"] == list(INCEPTION)

    # A second evaluation against the same sets computes nothing in the network.
    mid = forward_counter["images"]
    again = evaluate(real, synth, opts)
    assert forward_counter["images"] == mid
    assert again.metrics["fid"].value == report.metrics["fid"].value


def test_missing_weights_make_inception_metrics_unavailable(sets, tmp_path, monkeypatch, forward_counter):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    real, synth = sets
    report = evaluate(real, synth, EvalOptions(metrics=INCEPTION, cache_dir=tmp_path, floor=True))
    for res in (*[report.metrics[m] for m in INCEPTION], *[report.floor[m] for m in INCEPTION]):
        assert res.status == "unavailable" and res.value is None
        assert "--inception-weights" in res.reason and inc.WEIGHTS_FILENAME in res.reason
    assert forward_counter["images"] == 0
    with pytest.raises(WeightsUnavailableError):
        evaluate(real, synth, EvalOptions(metrics=INCEPTION, cache_dir=tmp_path, strict=True))


def test_missing_weights_leave_other_metrics_running(sets, tmp_path, monkeypatch):
    pytest.importorskip("genbench.metrics.ds")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    real, synth = sets
    report = evaluate(real.subset(range(8)), synth.subset(range(8)),
                      EvalOptions(metrics=("fid", "ds"), cache_dir=tmp_path))
    assert report.metrics["fid"].status == "unavailable"
    assert report.metrics["ds"].status == "ok", report.metrics["ds"].reason


def test_a_failing_metric_is_reported_not_raised(sets, inception_material, monkeypatch):
    from genbench.metrics import fidelity

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(fidelity, "kernel_inception_distance", broken)
    real, synth = sets
    report = evaluate(real, synth, EvalOptions(metrics=("fid", "kid"), inception_weights=inception_material.weights,
                                               cache_dir=inception_material.cache_dir))
    assert report.metrics["kid"].status == "failed" and "RuntimeError: boom" in report.metrics["kid"].reason
    assert report.metrics["fid"].status == "ok"
    assert "kid" in report.not_ok()


def test_empty_set_is_a_usage_error(sets):
    real, _ = sets
    empty = ImageSet(torch.zeros(0, 1, 32, 32))
    with pytest.raises(UsageError, match="empty image set"):
        evaluate(real, empty, EvalOptions(metrics=("fid",)))
