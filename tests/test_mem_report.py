"""The memorisation audit in the report: the two figures, drawn from what a run writes."""

from __future__ import annotations

import json

import numpy as np
import torch

from genbench.metrics.mem import compute_mem, save_top_pairs
from genbench.report.figures import FIGURES, make_figures


def _result(seed: int, copy: bool):
    rng = np.random.default_rng(seed)
    train = torch.from_numpy(rng.uniform(-1, 1, (30, 1, 16, 16)).astype(np.float32))
    real = torch.from_numpy(rng.uniform(-1, 1, (20, 1, 16, 16)).astype(np.float32))
    synth = train[:12] + 0.01 if copy else torch.from_numpy(rng.uniform(-1, 1, (12, 1, 16, 16)).astype(np.float32))
    return compute_mem(real, synth.clamp(-1, 1), train, boot=None)


def test_mem_figures_are_drawn_from_run_files(tmp_path):
    results = {"dataset": "toy", "models": {}}
    for model, copy in (("ddpm", True), ("wgan-gp", False)):
        res = _result(1, copy)
        (tmp_path / model).mkdir()
        assert save_top_pairs(res, tmp_path / model / "mem_pairs.npz") is not None
        with np.load(tmp_path / model / "mem_pairs.npz") as z:
            assert z["synth"].shape == (8, 16, 16) and z["train"].shape == (8, 16, 16)
            assert list(z["train_index"]) == res.params["top_pairs"]["train_index"]
        doc = json.loads(json.dumps({"metrics": {"mem": res.to_json()}}))
        results["models"][model] = {"metrics": doc}
    copies = np.load(tmp_path / "ddpm" / "mem_pairs.npz")
    # The copier's closest pairs are copies: the training partner is the synthetic image minus 0.01.
    np.testing.assert_allclose(copies["synth"], np.clip(copies["train"] + 0.01, -1, 1), atol=1e-6)
    written = {p.name for p in make_figures(tmp_path, results)}
    assert {"mem_pairs.png", "mem_pairs.pdf", "mem_histograms.png", "mem_histograms.pdf"} <= written
    assert "mem_pairs" in FIGURES and "mem_histograms" in FIGURES


def test_mem_figures_are_skipped_without_inputs(tmp_path):
    results = {"dataset": "toy", "models": {"ddpm": {"metrics": {"metrics": {"mem": {
        "status": "unavailable", "reason": "needs --train", "value": None}}}}}}
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "mem_pairs.png").write_bytes(b"stale")
    written = {p.name for p in make_figures(tmp_path, results)}
    assert not {n for n in written if n.startswith("mem_")}
    assert not (tmp_path / "figures" / "mem_pairs.png").exists()
    assert save_top_pairs(_result(2, False).__class__.unavailable("mem", "x"), tmp_path / "x.npz") is None
