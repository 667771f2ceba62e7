"""`genbench run` wiring: mem against the run's training split, the size-matched floor drawn from
it, and results that name no absolute path (a run folder can be moved or committed)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from runner_helpers import config, reporter

from genbench.protocol import FitResult
from genbench.runner import run_benchmark


@dataclass
class CopierConfig:
    noise: float = field(default=0.02, metadata={"role": "sampling"})


class Copier:
    """A "generator" that returns its training images with noise sigma 0.02: the memoriser."""

    name = "copier"

    def __init__(self) -> None:
        self.config = CopierConfig()
        self.train = torch.zeros(0)

    def fit(self, train, *, workdir=None, steps=None, seed=0, progress=None) -> FitResult:
        self.train = train.images.clone() if hasattr(train, "images") else train.clone()
        return FitResult(steps=1)

    def sample(self, n, *, seed=0, batch_size=None):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(self.train), (n,), generator=g)
        x = self.train[idx] + self.config.noise * torch.randn(self.train[idx].shape, generator=g)
        return x.clamp(-1, 1)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({"train": self.train.contiguous()}, str(path))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.train = load_file(str(path))["train"]

    def num_parameters(self) -> int:
        return 0


class _EP:
    def load(self):
        return lambda preset="quick", resolution=None, **kw: Copier()




MODELS = ["copier", "ddpm"]


@pytest.fixture(scope="module")
def mem_run(tmp_path_factory):
    import os

    from genbench import protocol
    from genbench.metrics import mem

    real, old = protocol._entry_points, os.environ.get("TORCH_HOME")
    protocol._entry_points = lambda: {**real(), "copier": _EP()}
    search, calls = mem.nearest_training, []

    def counted(images, train, **kw):
        calls.append((images.clone(), len(train), kw.get("measure")))
        return search(images, train, **kw)

    mem.nearest_training = counted
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch_home_mod"))
    try:
        out = tmp_path_factory.mktemp("runs")
        rep, buf = reporter()
        results = run_benchmark(config(out, models=MODELS, metrics=("ds", "mem"), figures=True), rep)
    finally:
        protocol._entry_points = real
        mem.nearest_training = search
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old
    return out, results, buf.getvalue(), calls


def test_run_scores_mem_with_ci_against_the_training_split(mem_run):
    out, results, _log, _calls = mem_run
    root = out / "pelvic" / "quick"
    n_train, n_test = results["data"]["n_train"], results["data"]["n_test"]
    for m in MODELS:
        mem = results["models"][m]["metrics"]["metrics"]["mem"]
        assert mem["status"] == "ok", mem
        lo, hi = mem["ci"]
        assert 0 <= lo <= mem["value"] <= hi <= 1
        assert mem["params"]["n_train"] == n_train and mem["params"]["n_calibration"] == n_test
        assert (root / m / "mem_pairs.npz").is_file()
    copier = results["models"]["copier"]["metrics"]["metrics"]["mem"]
    assert copier["value"] >= 0.9 and copier["ci"][0] > 0.5, copier
    # The training partner of each of the copier's closest pairs is the image it copied.
    with np.load(root / "copier" / "mem_pairs.npz") as z:
        np.testing.assert_allclose(z["synth"], z["train"], atol=0.1)
    figs = {p.name for p in (root / "figures").iterdir()}
    assert {"mem_pairs.png", "mem_histograms.png"} <= figs
    from genbench.report.html import CAPTIONS, build_html

    page = build_html(root)
    assert CAPTIONS["mem_pairs"][:30] in page and CAPTIONS["mem_histograms"][:30] in page


def test_run_floor_is_size_matched_from_the_training_split(mem_run):
    _out, results, _log, _calls = mem_run
    info = results["floor"]["floor_info"]
    n = results["data"]["n_test"]
    assert info["method"] == "size-matched" and info["size_matched"]
    assert info["n_real"] == info["n_synth"] == n and info.get("other") == "train"
    ds = results["floor"]["metrics"]["ds"]
    assert ds["status"] == "ok" and ds["n_real"] == ds["n_synth"] == n
    # mem's floor: new patients (held-out halves) against the whole training split, not the
    # training split's own sample (which shares patients with the rest of it).
    mem = results["floor"]["metrics"]["mem"]
    assert mem["status"] == "ok" and mem["params"]["n_train"] == results["data"]["n_train"]
    assert mem["params"]["floor"]["method"] == "halves" and mem["n_synth"] == n // 2
    assert info["training_set_metrics"]["metrics"] == ["mem"]
    copier = results["models"]["copier"]["metrics"]["metrics"]["mem"]["value"]
    assert mem["value"] < copier, (mem["value"], copier)


def test_results_name_no_absolute_path(mem_run, tmp_path):
    out, results, _log, _calls = mem_run
    root = out / "pelvic" / "quick"
    for f in [root / "results.json", *root.glob("*/metrics.json"), *root.glob("**/.stages/*.json")]:
        text = f.read_text()
        assert str(out) not in text and str(Path.home()) not in text, f
        assert '"/' not in text, (f, text[text.index('"/') - 80:text.index('"/') + 80])
    synth = results["models"]["ddpm"]["metrics"]["synth"]["path"]
    assert synth == "ddpm/samples.npz" and (root / synth).is_file()
    # A moved run folder resumes: every stage is found cached there.
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    from genbench import protocol

    real = protocol._entry_points
    protocol._entry_points = lambda: {**real(), "copier": _EP()}
    try:
        rep, buf = reporter()
        again = run_benchmark(config(moved, models=MODELS, metrics=("ds", "mem")), rep)
    finally:
        protocol._entry_points = real
    log = buf.getvalue()
    assert "floor: done (cached)" in log and log.count("evaluate done (cached)") == 2, log
    assert again["models"]["ddpm"]["metrics"] == results["models"]["ddpm"]["metrics"]


def _stage_context(out: Path):
    from genbench.run_stages import EvalSettings, StageContext
    from genbench.runner import Runner

    cfg = config(out, models=["ddpm"], metrics=("ds", "mem"))
    data = Runner(cfg)._prepare_data()
    rep, buf = reporter()
    # The run's evaluation settings (device and cache location are not part of the identity).
    settings = EvalSettings(("ds", "mem"), None, None, "cpu", 0, None)
    ctx = StageContext(root=cfg.root, dataset="pelvic", seed=0, force=False,
                       discard_checkpoints=False, say=rep, settings=settings)
    return ctx, data, buf


def test_changed_training_set_reruns_evaluation(mem_run, tmp_path):
    from genbench.run_stages import evaluate_stage
    from genbench.stages import StageStore

    out = tmp_path / "runs"
    shutil.copytree(mem_run[0], out)
    ctx, data, buf = _stage_context(out)
    mdir = ctx.root / "ddpm"
    rec = StageStore(mdir).read("sample")
    same = evaluate_stage(ctx, "ddpm", data.test, rec, mdir, train=data.train)
    assert "ddpm: evaluate done (cached)" in buf.getvalue()
    assert same == mem_run[1]["models"]["ddpm"]["metrics"]
    fewer = data.train.subset(np.arange(len(data.train) - 5))
    changed = evaluate_stage(ctx, "ddpm", data.test, rec, mdir, train=fewer)
    assert buf.getvalue().count("evaluate done (cached)") == 1
    assert changed["metrics"]["mem"]["params"]["n_train"] == len(data.train) - 5
    # The held-out set prepared for one training set is not reused with another.
    other = evaluate_stage(ctx, "ddpm", data.test, rec, mdir, train=data.train.subset(np.arange(8)))
    assert other["metrics"]["mem"]["params"]["n_train"] == 8


def test_small_training_split_falls_back_to_labelled_halves(mem_run, tmp_path):
    from genbench.run_stages import floor_stage

    out = tmp_path / "runs"
    shutil.copytree(mem_run[0], out)
    ctx, data, buf = _stage_context(out)
    n = len(data.test)
    small = data.train.subset(np.arange(n - 1))
    obj = floor_stage(ctx, data.test, str(data.fingerprint), train=small)
    info = obj["floor_info"]
    assert info["method"] == "halves" and not info["size_matched"] and info["n_real"] == n // 2
    assert obj["metrics"]["ds"]["n_real"] == n // 2
    assert f"n = N/2 = {n // 2}" in buf.getvalue() and "notice:" in buf.getvalue()


def test_held_out_search_runs_once_for_all_models(mem_run):
    """The held-out set's nearest-training search (mem's calibration) is the same for every
    model: the run computes it once for all of them."""
    from genbench.runner import Runner

    out, results, _log, calls = mem_run
    data = Runner(config(out, models=["ddpm"]))._prepare_data()
    ssim = [c for c in calls if c[2] == "ssim"]
    is_held_out = [c[0].shape == data.test.images.shape and torch.equal(c[0], data.test.images)
                   for c in ssim]
    n_train, n = results["data"]["n_train"], results["data"]["n_test"]
    held_out = sorted(c[1] for c, h in zip(ssim, is_held_out) if h)
    # Once for all models; the floor searches its two held-out halves.
    assert held_out == [n_train], [(c[0].shape, c[1]) for c in ssim]
    assert sum(len(c[0]) == n // 2 and c[1] == n_train for c in ssim) == 2
    # Each model's samples are searched against the full training split, once.
    assert sum(len(c[0]) == n and c[1] == n_train and not h for c, h in zip(ssim, is_held_out)) == len(MODELS)


def test_mem_floor_uses_new_patients_not_the_training_splits_own_sample(tmp_path):
    """On a phantom with many slices per patient, a sample of the training split against the rest
    of it reads as memorised; the run's mem floor (held-out patients) reads near its ideal rate."""
    from genbench.data.prepare import prepare_dataset
    from genbench.metrics.pipeline import EvalOptions, floor
    from genbench.run_stages import EvalSettings, StageContext, floor_stage

    p = prepare_dataset("pelvic", size=16, n=400, use_cache=False)
    rep, _buf = reporter()
    ctx = StageContext(root=tmp_path, dataset="pelvic", seed=0, force=False, discard_checkpoints=False,
                       say=rep, settings=EvalSettings(("ds", "mem"), None, None, "cpu", 0, None,
                                                      extra={"bootstrap": 50}))
    obj = floor_stage(ctx, p.test, str(p.fingerprint), train=p.train)
    assert obj["floor_info"]["method"] == "size-matched"
    mem = obj["metrics"]["mem"]
    own = floor(p.test, EvalOptions(metrics=("mem",), bootstrap=50, device="cpu"), other=p.train,
                train=p.train).metrics["mem"]
    assert own.value > 0.5 and mem["value"] < 0.2, (own.value, mem["value"], mem["params"]["ideal_rate"])
