"""The Python API: genbench.evaluate / genbench.prepare_real, and the README's training-loop example."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import genbench
from genbench.errors import UsageError
from genbench.metrics import ds as ds_module

ROOT = Path(__file__).resolve().parents[1]


def _sets(n=12, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 1, size, size, generator=g) * 2 - 1
    real = (base + 0.3 * torch.randn(n, 1, size, size, generator=g)).clamp(-1, 1)
    synth = (base + 0.6 * torch.randn(n, 1, size, size, generator=g)).clamp(-1, 1)
    return real, synth


def test_evaluate_takes_tensors_arrays_and_folders_and_matches_the_pipeline(tmp_path):
    from genbench.io.writers import write_npz
    from genbench.metrics.pipeline import EvalOptions, evaluate
    from genbench.imageset import ImageSet

    real, synth = _sets()
    ref = evaluate(ImageSet(real), ImageSet(synth), EvalOptions(metrics="ds"))
    from_tensor = genbench.evaluate(real, synth, metrics="ds")
    from_numpy = genbench.evaluate(real.numpy()[:, 0], synth.numpy(), metrics="ds")
    assert from_tensor.metrics["ds"].value == ref.metrics["ds"].value == from_numpy.metrics["ds"].value
    assert from_tensor.to_json()["metrics"]["ds"]["value"] == ref.metrics["ds"].value
    u8 = ((real.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().to(torch.uint8)
    assert genbench.evaluate(u8, synth, metrics="ds").metrics["ds"].status == "ok"
    write_npz(real, tmp_path / "real.npz")
    from_file = genbench.evaluate(tmp_path / "real.npz", synth, metrics="ds")
    assert from_file.real.path == str(tmp_path / "real.npz")
    assert from_file.metrics["ds"].value == pytest.approx(ref.metrics["ds"].value, abs=1e-6)


def test_bad_inputs_and_options_are_usage_errors():
    real, synth = _sets()
    with pytest.raises(UsageError, match="canonical range"):
        genbench.evaluate(real * 5, synth, metrics="ds")
    with pytest.raises(UsageError, match="single-channel"):
        genbench.evaluate(torch.zeros(4, 3, 16, 16), synth, metrics="ds")
    with pytest.raises(UsageError, match="unknown option"):
        genbench.evaluate(real, synth, metrics="ds", fds_seedz=1)
    with pytest.raises(UsageError, match="unknown metric"):
        genbench.evaluate(real, synth, metrics="dss")


def test_prepare_real_computes_the_real_side_once(monkeypatch):
    real, synth = _sets()
    calls = []
    original = ds_module.nearest_ssim

    def counting(images, **kw):
        calls.append(len(images))
        return original(images, **kw)

    monkeypatch.setattr(ds_module, "nearest_ssim", counting)
    prepared = genbench.prepare_real(real, metrics="ds")
    first = prepared.evaluate(synth)
    second = prepared.evaluate(synth.flip(-1))
    # REAL's nearest SSIMs: once; each synthetic set: once.
    assert calls == [len(real), len(synth), len(synth)]
    direct = genbench.evaluate(real, synth, metrics="ds")
    assert first.metrics["ds"].value == direct.metrics["ds"].value
    # Synthetic sets are forgotten between calls (a training loop must not grow memory).
    kept = [k for k in prepared.shared if k != "_sha256"]
    assert len(kept) == 1


def test_readme_training_loop_example_runs():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```", readme, re.S)
    assert block, "README lost its Python API example"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    history = namespace["history"]
    assert len(history) == 2 and all(np.isfinite(v) for _, ds, fds in history for v in (ds, fds))
