"""Precision/recall/density/coverage equal the prdc package's values on the same features."""

from __future__ import annotations

import numpy as np
import pytest

from genbench.metrics import prdc as ours

prdc_pkg = pytest.importorskip("prdc")


@pytest.mark.parametrize("n,m,d,shift,scale", [(40, 55, 6, 0.0, 1.0), (120, 90, 32, 0.4, 1.3),
                                                 (60, 60, 2048, 0.05, 0.9)])
def test_equals_the_prdc_package(capsys, n, m, d, shift, scale):
    rng = np.random.default_rng(n + m + d)
    real = rng.normal(size=(n, d)).astype(np.float32)
    synth = (rng.normal(size=(m, d)) * scale + shift).astype(np.float32)
    got = ours.prdc(real, synth, k=5).as_dict()
    want = prdc_pkg.compute_prdc(real_features=real, fake_features=synth, nearest_k=5)
    capsys.readouterr()  # the package prints the set sizes
    for key in ("precision", "recall", "density", "coverage"):
        assert got[key] == pytest.approx(float(want[key]), abs=1e-12), key


def test_blocks_do_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(1)
    real, synth = rng.normal(size=(37, 5)), rng.normal(size=(29, 5)) + 0.2
    whole = ours.prdc(real, synth).as_dict()
    monkeypatch.setattr(ours, "BLOCK", 4)
    assert ours.prdc(real, synth).as_dict() == whole


def test_density_and_coverage_react_as_defined():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(200, 4))
    # Identical sets: every synthetic sample sits on a real one.
    same = ours.prdc(real, real)
    assert same.precision == same.recall == same.coverage == 1.0
    # Collapse onto 5 real samples: precision stays 1, coverage and recall collapse.
    collapsed = np.repeat(real[:5], 40, axis=0) + 1e-6
    c = ours.prdc(real, collapsed)
    assert c.precision == 1.0 and c.coverage < 0.25 and c.recall == 0.0
    # Far-away synthetic samples sit in no real ball.
    far = ours.prdc(real, real + 100.0)
    assert far.precision == far.density == far.coverage == 0.0


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(ours.PRDCInputError, match="more than k=5"):
        ours.prdc(np.zeros((5, 3)), np.ones((10, 3)))


def test_ties_are_strict_as_in_the_prdc_package(capsys):
    # Integer grid points: squared distances are exact integers, so a neighbour sits exactly on a
    # ball's radius and the strict '<' of the definitions decides (a '<=' would count it).
    g = np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0)), -1).reshape(-1, 2)
    for real, synth in ((g, g), (g, g[::2] + np.array([1.0, 0.0])), (g, g + 0.5)):
        got = ours.prdc(real, synth, k=5).as_dict()
        want = prdc_pkg.compute_prdc(real_features=real, fake_features=synth, nearest_k=5)
        capsys.readouterr()
        for key in ("precision", "recall", "density", "coverage"):
            assert got[key] == pytest.approx(float(want[key]), abs=1e-12), (key, got, want)
