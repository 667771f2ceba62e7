"""`genbench run --utility`: per-class generators on the run's stages, the utility stage,
resume after a kill, and the one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from runner_helpers import OVERRIDES, reporter, run_and_kill, tensor_bytes

from genbench.cli import main
from genbench.io.hashing import file_sha256
from genbench.runner import RunConfig, run_benchmark

CLASSIFIER = {"arch": "tiny", "steps": 5}
SETTINGS = {
    "dataset": "chest", "models": ["ddpm"], "size": 16, "steps": 6, "n_images": 60,
    "metrics": ("ds",), "figures": False, "utility": True, "utility_seeds": 2,
    "classifier": CLASSIFIER,
    "overrides": {k: v for k, v in OVERRIDES.items() if not k.startswith("pggan.")},
}
CLI_ARGS = [
    "--dataset", "chest", "--models", "ddpm", "--size", "16", "--steps", "6", "--n-images", "60",
    "--metrics", "ds", "--no-figures", "-q", "--utility", "--utility-seeds", "2",
    "--classifier", "tiny", "--classifier-steps", "5",
    *[a for k, v in SETTINGS["overrides"].items()
      for a in ("--set", f"{k}={str(v).replace(' ', '').lower() if isinstance(v, list) else v}")],
]


def _config(out: Path, **changes) -> RunConfig:
    return RunConfig(**{**SETTINGS, "out": out, **changes})


def _weights(root: Path) -> dict[str, dict[str, bytes]]:
    return {d.parent.parent.parent.name: tensor_bytes(d)
            for d in sorted(root.glob("ddpm/class-*/training/*/final.safetensors"))}


def _stable(utility: dict) -> str:
    u = dict(utility)
    for k in ("elapsed_s", "train_seconds"):
        u.pop(k, None)
    return json.dumps(u, sort_keys=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("utility_run") / "runs"
    rep, buf = reporter()
    results = run_benchmark(_config(out), rep)
    return out, results, buf.getvalue()


def test_layout_per_class_training_and_utility(base):
    out, results, log = base
    root = out / "chest" / "quick"
    data = json.loads((root / "data.json").read_text())
    assert data["classes"] == ["normal", "covid"] and data["prepare"]["options"]["labels"] == "phantom"
    counts = {c: v["train"] for c, v in data["class_counts"].items()}
    # One generator per class, trained on that class only (its identity names the class).
    for k, cls in enumerate(("normal", "covid")):
        (tdir,) = (root / "ddpm" / f"class-{k}" / "training").iterdir()
        ident = json.loads((tdir / "identity.json").read_text())
        assert ident["data"] == f"{data['fingerprint']}/class-{k}"
        with np.load(root / "ddpm" / f"class-{k}" / "samples.npz") as z:
            assert len(z["images"]) >= counts[cls]
        assert f"ddpm ({cls}): trained 6 steps" in log
    assert len(_weights(root)) == 2
    # results.json names both class trainings (relative to the run) and their weights' hashes.
    train = results["models"]["ddpm"]["train"]
    assert train["folder"] is None and len(train["folders"]) == 2
    for k, folder in enumerate(train["folders"]):
        assert folder.startswith(f"ddpm/class-{k}/training/") and (root / folder).is_dir()
        assert (train["weights_sha256_per_class"][f"class-{k}/final.safetensors"]
                == file_sha256(root / folder / "final.safetensors"))
    # The pooled fidelity set: n = held-out size, classes in the training proportion.
    with np.load(root / "ddpm" / "samples.npz") as z:
        n = len(z["images"])
        meta = json.loads(str(z["meta"]))
    assert n == data["n_test"] == results["models"]["ddpm"]["samples"]["n"]
    assert sorted(meta["labels"]) == [0] * (n // 2) + [1] * (n - n // 2)
    assert meta["labels"][:2] == [0, 1]  # interleaved: a figure's first samples show both
    assert results["models"]["ddpm"]["metrics"]["metrics"]["ds"]["status"] == "ok"
    # The utility stage: utility.json, results.json entries, the tables' Utility block.
    u = json.loads((root / "ddpm" / "utility.json").read_text())
    assert results["models"]["ddpm"]["utility"] == u
    assert u["n"]["synthetic"] == u["n"]["real"] == counts
    assert u["classifier"]["arch"] == "tiny" and u["seeds"] == [0, 1]
    assert results["utility"]["real"] == u["conditions"]["real"]
    assert "### Utility" in (root / "table.md").read_text()
    assert "utility_accuracy" in (root / "table.csv").read_text()


def test_reader_study_and_sample_checks_rebuild_a_labelled_runs_held_out_set(base):
    """`genbench turing make RUN/MODEL` re-prepares the held-out set; a --utility run's data carry
    label options (finding strength, prevalence) that must be used to get the same images."""
    from genbench.turing.study import load_run_sets

    out, _, _ = base
    root = out / "chest" / "quick"
    real, synth, info = load_run_sets(root / "ddpm")
    data = json.loads((root / "data.json").read_text())
    assert real.sha256() == data["test_sha256"] and len(real) == data["n_test"] == len(synth)
    assert info["dataset"] == "chest"


def test_rerun_and_standalone_command_retrain_nothing(base, tmp_path, capsys):
    out, results, _ = base
    root = out / "chest" / "quick"
    rep, buf = reporter()
    again = run_benchmark(_config(out), rep)
    log = buf.getvalue()
    assert "trained" not in log and "utility done (cached)" in log
    assert _stable(again["models"]["ddpm"]["utility"]) == _stable(results["models"]["ddpm"]["utility"])
    # `genbench utility RUN_DIR` repeats the run's settings from its cached predictions.
    rc = main(["utility", str(root), "--json"])
    captured = capsys.readouterr()
    assert rc == 0 and "trained" not in captured.err
    assert _stable(json.loads(captured.out)["ddpm"]) == _stable(results["models"]["ddpm"]["utility"])


def test_kill_inside_class_training_then_resume(base, tmp_path):
    out = tmp_path / "runs"
    # The same thread count as this process (which trains the reference and the resumed part):
    # bitwise equality of weights holds on one machine at one thread count.
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch_home"), OMP_NUM_THREADS=str(torch.get_num_threads()))
    root = out / "chest" / "quick"
    trigger = "ddpm/class-1/training/*/checkpoints/ckpt-00000002.pt"
    rc = run_and_kill(CLI_ARGS, out, root, trigger, env, timeout=600)
    assert rc == -9, f"the run ended (rc={rc}) before {trigger} appeared"
    assert not (root / "ddpm" / "utility.json").exists()
    rep, buf = reporter()
    results = run_benchmark(_config(out), rep)
    log = buf.getvalue()
    assert "ddpm (normal): train done (cached" in log  # class 0 finished before the kill
    assert "ddpm (covid): trained 6 steps" in log and "resumed from step 2" in log
    ref_out, ref, _ = base
    assert _weights(root) == _weights(ref_out / "chest" / "quick")
    assert (results["models"]["ddpm"]["samples"]["npz_sha256"]
            == ref["models"]["ddpm"]["samples"]["npz_sha256"])
    assert _stable(results["models"]["ddpm"]["utility"]) == _stable(ref["models"]["ddpm"]["utility"])


def test_utility_without_labels_is_one_line(tmp_path, capsys):
    rc = main(["run", "--dataset", "heart", "--models", "ddpm", "--utility", "--out",
               str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "heart phantom has no labelled finding" in err
    data = tmp_path / "cxr"
    data.mkdir()
    for i in range(30):
        Image.fromarray(np.full((20, 20), 8 * i, dtype=np.uint8)).save(data / f"{i:08d}_000.png")
    rc = main(["run", "--dataset", "chest", "--data", str(data), "--models", "ddpm", "--utility",
               "--size", "16", "--out", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--utility needs class labels" in err and "--labels folders" in err


@pytest.fixture
def pixel_models(monkeypatch):
    """Two pixel-Gaussian generators (tests/utility_conditional.py) registered as entry points."""
    from importlib.metadata import EntryPoint

    import utility_conditional

    from genbench import protocol

    real = protocol._entry_points()
    extra = {n: EntryPoint(n, f"utility_conditional:{f}", protocol.ENTRY_POINT_GROUP)
             for n, f in (("pixel-gaussian", "create"),
                          ("pixel-gaussian-uncond", "create_unconditional"))}
    monkeypatch.setattr(protocol, "_entry_points", lambda: {**real, **extra})
    utility_conditional.FITS.clear()
    return utility_conditional.FITS


def _prepared():
    from genbench.data import prepare_dataset

    return prepare_dataset("chest", size=16, n=60, options={"labels": "phantom"})


def test_unconditional_model_is_trained_on_each_class_alone(tmp_path, pixel_models):
    results = run_benchmark(_config(tmp_path / "runs", models=["pixel-gaussian-uncond"],
                                    overrides={}, utility_seeds=1), reporter()[0])
    ds = _prepared()
    want = [ds.train.images[torch.from_numpy(ds.train_labels == k)] for k in (0, 1)]
    assert [f["n"] for f in pixel_models] == [len(x) for x in want]
    for fit, x in zip(pixel_models, want):  # exactly that class's training images
        assert fit["mean"] == pytest.approx(float(x.double().mean()), abs=1e-12)
    u = results["models"]["pixel-gaussian-uncond"]["utility"]
    assert u["n"]["synthetic"] == {c: len(x) for c, x in zip(ds.classes, want)}


def test_class_conditional_model_is_trained_once(tmp_path, pixel_models):
    results = run_benchmark(_config(tmp_path / "runs", models=["pixel-gaussian"], overrides={},
                                    utility_seeds=1), reporter()[0])
    root = tmp_path / "runs" / "chest" / "quick" / "pixel-gaussian"
    data = json.loads((root.parent / "data.json").read_text())
    ds = _prepared()
    (fit,) = pixel_models  # trained once, on every training image with its class
    assert fit["n"] == data["n_train"] and fit["labels"] == ds.train_labels.tolist()
    assert (root / "training").is_dir() and not (root / "class-0" / "training").exists()
    train = results["models"]["pixel-gaussian"]["train"]
    assert train["per_class"] is False and train["folders"] == [train["folder"]]
    assert train["folder"].startswith("pixel-gaussian/training/")
    # Each class folder holds that class's samples: their mean is the class's training mean.
    for k in (0, 1):
        with np.load(root / f"class-{k}" / "samples.npz") as z:
            got = z["images"].mean(axis=0)
        want = ds.train.images[torch.from_numpy(ds.train_labels == k)].mean(dim=0)[0].numpy()
        assert np.abs(got - want).mean() < 0.05
        other = ds.train.images[torch.from_numpy(ds.train_labels != k)].mean(dim=0)[0].numpy()
        assert np.abs(got - want).mean() < np.abs(got - other).mean()
    u = results["models"]["pixel-gaussian"]["utility"]
    assert u["n"]["synthetic"] == u["n"]["real"]


def test_fidelity_shares_are_proportional_and_sum_to_n():
    from genbench.utility.pipeline import fidelity_shares

    assert fidelity_shares(np.array([270, 210]), 120).tolist() == [68, 52]  # 67.5/52.5: ties by order
    assert fidelity_shares(np.array([1, 1, 1]), 10).tolist() == [4, 3, 3]
    got = fidelity_shares(np.array([5, 900, 95]), 37)
    assert got.sum() == 37 and got.tolist() == [0, 33, 4]  # 0.185 / 33.3 / 3.515
