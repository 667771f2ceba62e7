"""`genbench run` in-process: layout, caching, invalidation, missing weights, bad options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runner_helpers import CLI_ARGS, MODELS, OVERRIDES, config, reporter, run_and_kill, tensor_bytes

from genbench.errors import InputError, UsageError
from genbench.runner import RunConfig, Runner, parse_overrides, run_benchmark
from genbench.stages import StageStore, content_key


@pytest.fixture(autouse=True)
def _no_inception_weights(tmp_path_factory, monkeypatch):
    # The default weights location is under TORCH_HOME: point it at an empty folder so the
    # tests see "weights missing" on every machine.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    import os

    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch_home_mod"))
    try:
        out = tmp_path_factory.mktemp("runs")
        rep, buf = reporter(terminal=True)  # exercise the progress bars too
        results = run_benchmark(config(out, figures=True), rep)
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old
    return out, results, buf.getvalue()


def _copy(base: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "runs"
    shutil.copytree(base, dst)
    return dst


def test_layout_and_results(base_run):
    out, results, _log = base_run
    root = out / "pelvic" / "quick"
    for name in ("results.json", "table.csv", "table.md", "table.tex", "data.json",
                 "real_preview.npz", "floor/metrics.json"):
        assert (root / name).is_file(), name
    for m in MODELS:
        d = root / m
        for name in ("config.json", "samples.npz",
                     "metrics.json", "losses.jsonl"):
            assert (d / name).is_file(), (m, name)
        tdir = _training_dir(d)
        assert tdir.parent == d / "training" and (tdir / "final.safetensors").is_file()
        assert results["models"][m]["train"]["folder"] == f"{m}/training/{tdir.name}"
        ident = json.loads((tdir / "identity.json").read_text())
        assert ident["seed"] == 0 and ident["identity"]["model"] == m
        pngs = sorted((d / "samples").glob("*.png"))
        assert len(pngs) == results["data"]["n_test"] == results["settings"]["n_samples"]
        # CT samples are written as 16-bit PNGs
        assert Image.open(pngs[0]).mode.startswith("I")
        with np.load(d / "samples.npz") as z:
            assert z["images"].shape == (len(pngs), 16, 16)
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["metrics"]["ds"]["status"] == "ok"
        assert results["models"][m]["metrics"] == metrics
        assert json.loads((d / "config.json").read_text())["config"]["resolution"] == 16
    assert set(json.loads((root / "results.json").read_text())["models"]) == set(MODELS)
    assert results["floor"]["metrics"]["ds"]["status"] == "ok"
    # the per-model override reached ddpm only
    assert results["models"]["ddpm"]["config"]["config"]["ch"] == 16
    assert "ch" not in results["models"]["pggan"]["config"]["config"]
    # figures whose inputs exist (no FDS was asked for, so no t-SNE panel)
    figs = sorted(p.name for p in (root / "figures").iterdir())
    assert figs == sorted(f"{n}.{e}" for n in ("samples", "nearest_ssim", "losses")
                          for e in ("png", "pdf"))
    md = (root / "table.md").read_text()
    # One dataset: models x metrics; FID (no weights here) is one "not available" line, not n/a rows.
    assert "| Model | DS ↓ |" in md and "real-vs-real (floor)" in md and "Not available (FID ↓" in md


def test_missing_weights_na_and_one_notice(base_run):
    out, results, log = base_run
    assert log.count("notice:") == 1 and "--inception-weights" in log
    for m in MODELS:
        fid = results["models"][m]["metrics"]["metrics"]["fid"]
        assert fid["status"] == "unavailable" and fid["value"] is None
    md = (out / "pelvic/quick/table.md").read_text()
    assert md.count("--inception-weights") <= 1 and "Not available (FID ↓" in md and "n/a |" not in md


def test_rerun_skips_every_stage(base_run, tmp_path):
    out = _copy(base_run[0], tmp_path)
    rep, buf = reporter()
    results = run_benchmark(config(out), rep)
    log = buf.getvalue()
    for m in MODELS:
        for stage in ("train", "sample", "evaluate"):
            assert f"{m}: {stage} done (cached" in log, log
    assert "floor: done (cached)" in log
    for m in MODELS:
        assert results["models"][m]["metrics"] == base_run[1]["models"][m]["metrics"]


def test_config_change_invalidates_only_dependent_stages(base_run, tmp_path):
    out = _copy(base_run[0], tmp_path)
    root = out / "pelvic" / "quick"
    before = StageStore(root / "ddpm").read("train").completed_at
    changed = {**OVERRIDES, "pggan.lr": 5e-4}
    # a pggan-only option: pggan retrains; ddpm is untouched
    rep, buf = reporter()
    run_benchmark(config(out, overrides=changed), rep)
    log = buf.getvalue()
    assert "ddpm: train done (cached" in log and "ddpm: evaluate done (cached" in log
    assert "pggan: trained 6 steps" in log and "pggan: sampled" in log
    # another config's checkpoints are not resumed, nor deleted: the message says where they are
    old_dir = _training_dir(base_run[0] / "pelvic/quick/pggan").relative_to(base_run[0] / "pelvic/quick")
    assert "pggan: training settings changed (lr 0.0006 -> 0.0005): training anew in " in log
    assert f"the earlier checkpoints stay in {old_dir}/" in log
    assert StageStore(root / "ddpm").read("train").completed_at == before
    # more samples: sampling and evaluation rerun, training does not
    rep, buf = reporter()
    run_benchmark(config(out, overrides=changed, n_samples=12), rep)
    log = buf.getvalue()
    for m in MODELS:
        assert f"{m}: train done (cached" in log and f"{m}: sampled 12 images" in log
    assert "floor: done (cached)" in log
    assert len(list((root / "pggan" / "samples").glob("*.png"))) == 12
    # another metric set: only evaluation reruns
    rep, buf = reporter()
    run_benchmark(config(out, overrides=changed, n_samples=12, metrics=("ds",)), rep)
    log = buf.getvalue()
    assert "pggan: sample done (cached" in log and "pggan: evaluated" in log


def _training_dir(mdir: Path) -> Path:
    """The model's current training folder (the one its samples come from)."""
    rec = StageStore(mdir).read("train")
    return mdir.parent / rec.info["folder"]  # recorded relative to the run folder


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> its SHA-256 (byte identity of a whole training)."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sampling_option_change_resamples_without_training(base_run, tmp_path):
    out = _copy(base_run[0], tmp_path)
    root = out / "pelvic" / "quick"
    trainings = {m: _tree(root / m / "training") for m in MODELS}
    assert any(k.endswith(".pt") for k in trainings["ddpm"]), "no checkpoints to protect"
    old_npz = (root / "ddpm" / "samples.npz").read_bytes()
    old_metrics = json.loads((root / "ddpm" / "metrics.json").read_text())
    rep, buf = reporter()
    results = run_benchmark(config(out, overrides={**OVERRIDES, "ddpm.sample_steps": 3}), rep)
    log = buf.getvalue()
    # no training anywhere; every checkpoint and weights file is still there, byte for byte
    assert "trained" not in log and "training anew" not in log
    assert "ddpm: train done (cached" in log and "pggan: train done (cached" in log
    for m in MODELS:
        assert _tree(root / m / "training") == trainings[m], m
    # new samples and new metrics for ddpm; pggan untouched
    assert "ddpm: sampled 10 images" in log and "ddpm: evaluated" in log
    assert "pggan: sample done (cached" in log and "pggan: evaluate done (cached" in log
    assert (root / "ddpm" / "samples.npz").read_bytes() != old_npz
    new_metrics = json.loads((root / "ddpm" / "metrics.json").read_text())
    assert new_metrics["metrics"]["ds"]["value"] != old_metrics["metrics"]["ds"]["value"]
    assert results["models"]["ddpm"]["config"]["config"]["sample_steps"] == 3
    assert results["models"]["ddpm"]["train"]["weights_sha256"] == \
        base_run[1]["models"]["ddpm"]["train"]["weights_sha256"]


def test_runtime_option_change_reruns_nothing(base_run, tmp_path):
    out = _copy(base_run[0], tmp_path)
    rep, buf = reporter()
    run_benchmark(config(out, overrides={**OVERRIDES, "checkpoint_every": 3, "log_every": 2}), rep)
    log = buf.getvalue()
    for m in MODELS:
        for stage in ("train", "sample", "evaluate"):
            assert f"{m}: {stage} done (cached" in log, log


def test_training_option_change_keeps_old_checkpoints(base_run, tmp_path):
    out = _copy(base_run[0], tmp_path)
    mdir = out / "pelvic" / "quick" / "ddpm"
    old_dir = _training_dir(mdir)
    old = _tree(old_dir)
    rep, buf = reporter()
    run_benchmark(config(out, models=["ddpm"], overrides={**OVERRIDES, "ddpm.lr": 5e-4}), rep)
    log = buf.getvalue()
    new_dir = _training_dir(mdir)
    assert new_dir != old_dir and "ddpm: trained 6 steps" in log
    assert f"the earlier checkpoints stay in ddpm/training/{old_dir.name}/" in log
    assert _tree(old_dir) == old  # the earlier training is on disk, byte for byte
    assert any(p.suffix == ".pt" for p in (new_dir / "checkpoints").iterdir())
    # going back to the earlier settings finds their weights again: no training
    rep, buf = reporter()
    results = run_benchmark(config(out, models=["ddpm"]), rep)
    log = buf.getvalue()
    assert "trained" not in log and "ddpm: train done earlier with these settings" in log
    assert _training_dir(mdir) == old_dir
    assert results["models"]["ddpm"]["metrics"]["metrics"]["ds"]["value"] == \
        base_run[1]["models"]["ddpm"]["metrics"]["metrics"]["ds"]["value"]
    assert (mdir / "losses.jsonl").read_text() == (old_dir / "losses.jsonl").read_text()


def test_damaged_output_is_redone(base_run, tmp_path):
    out = _copy(base_run[0], tmp_path)
    root = out / "pelvic" / "quick"
    (root / "pggan" / "metrics.json").write_text("{truncated")
    (root / "ddpm" / "samples" / "sample_00000.png").unlink()
    rep, buf = reporter()
    results = run_benchmark(config(out), rep)
    log = buf.getvalue()
    assert "pggan: evaluated" in log and "ddpm: sampled" in log and "ddpm: train done" in log
    new, old = (r["models"]["pggan"]["metrics"]["metrics"]["ds"] for r in (results, base_run[1]))
    assert new["value"] == old["value"] and new["nearest_ssim_synth"] == old["nearest_ssim_synth"]


def test_force_redoes_and_keeps_earlier_checkpoints(base_run, tmp_path):
    out = _copy(base_run[0], tmp_path)
    mdir = out / "pelvic" / "quick" / "pggan"
    tdir = _training_dir(mdir)
    old = _tree(tdir)
    rep, buf = reporter()
    results = run_benchmark(config(out, models=["pggan"], force=True), rep)
    log = buf.getvalue()
    assert "cached" not in log and "pggan: trained 6 steps" in log
    kept = [p for p in tdir.parent.iterdir() if p.name.startswith(f"{tdir.name}.replaced-")]
    assert len(kept) == 1 and _tree(kept[0]) == old
    assert f"the earlier checkpoints are kept in pggan/training/{kept[0].name}/" in log
    assert _training_dir(mdir) == tdir and (tdir / "final.safetensors").is_file()
    # deterministic: redoing gives the same numbers
    assert results["models"]["pggan"]["metrics"]["metrics"]["ds"]["value"] == \
        base_run[1]["models"]["pggan"]["metrics"]["metrics"]["ds"]["value"]
    # --discard-checkpoints deletes the retrained settings' earlier files, and only those
    rep, buf = reporter()
    run_benchmark(config(out, models=["pggan"], force=True, discard_checkpoints=True), rep)
    assert "discarded the earlier checkpoints" in buf.getvalue()
    assert [p for p in tdir.parent.iterdir() if p.name.startswith(f"{tdir.name}.replaced-")] == kept
    assert (tdir / "final.safetensors").is_file()


def test_unknown_model_lists_installed(tmp_path):
    with pytest.raises(UsageError, match=r"unknown model 'nope'; installed generators: .*ddpm"):
        Runner(RunConfig(dataset="pelvic", models=["ddpm,nope"], out=tmp_path))


@pytest.mark.parametrize("changes, match", [
    ({"preset": "huge"}, "unknown preset"),
    ({"metrics": ("fid", "psnr")}, "unknown metric name\\(s\\): psnr"),
    ({"device": "tpu"}, "--device"),
    ({"device": "cuda:7"}, "--device cuda:7"),
    ({"discard_checkpoints": True}, "only applies with --force"),
    ({"overrides": {"stylegen.lr": 1}}, "not an installed generator"),
])
def test_bad_options(tmp_path, changes, match):
    with pytest.raises(UsageError, match=match):
        Runner(config(tmp_path, **changes))


def test_model_rejecting_an_option_fails_before_training(tmp_path):
    rep, _ = reporter()
    with pytest.raises(UsageError, match="unknown option"):
        run_benchmark(config(tmp_path, overrides={"no_such_option": 1}), rep)
    assert not (tmp_path / "pelvic" / "quick" / "pggan").exists()


def test_explicit_missing_weights_path_is_an_error(tmp_path):
    rep, _ = reporter()
    with pytest.raises(InputError, match="no such file"):
        run_benchmark(config(tmp_path, inception_weights=tmp_path / "w.pth"), rep)


def test_parse_overrides():
    assert parse_overrides(["lr=1e-3", "ddpm.ch_mult=[1,2]", "sampler=ddim", "x=true"]) == {
        "lr": 1e-3, "ddpm.ch_mult": [1, 2], "sampler": "ddim", "x": True}
    with pytest.raises(UsageError):
        parse_overrides(["novalue"])


def test_stage_store_roundtrip(tmp_path):
    store = StageStore(tmp_path)
    f = tmp_path / "out.bin"
    f.write_bytes(b"abc")
    key = content_key(a=1, b=[1, 2])
    assert content_key(b=[1, 2], a=1) == key  # order-independent
    rec = store.complete("s", key, [f], started=0.0)
    assert store.done("s", key).outputs == rec.outputs == {"out.bin": rec.outputs["out.bin"]}
    assert store.done("s", content_key(a=2)) is None
    f.write_bytes(b"abd")  # edited output: not done any more
    assert store.done("s", key) is None
    (tmp_path / ".stages" / "s.json").write_text("{broken")
    assert store.read("s") is None


# --------------------------------------------------------------------------- kill and resume

def _assert_same_as_uninterrupted(out: Path, reference: dict) -> None:
    root = out / "pelvic" / "quick"
    results = json.loads((root / "results.json").read_text())
    for m in MODELS:
        got = results["models"][m]
        want = reference["models"][m]
        # Same trained weights (compared as tensors: safetensors' header order varies by process)
        assert tensor_bytes(_training_dir(root / m) / "final.safetensors") == reference["_weights"][m], m
        assert got["samples"]["npz_sha256"] == want["samples"]["npz_sha256"], m
        for metric in ("fid", "ds"):
            a, b = got["metrics"]["metrics"][metric], want["metrics"]["metrics"][metric]
            assert (a["value"], a["status"]) == (b["value"], b["status"]), (m, metric)
    # nothing half-written is left where a reader would look
    for p in root.rglob("*.json"):
        json.loads(p.read_text())


def _kill_resume(base_run, tmp_path, trigger):
    import os

    out = tmp_path / "runs"
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch_home"))
    ref = dict(base_run[1])
    ref["_weights"] = {m: tensor_bytes(_training_dir(base_run[0] / "pelvic/quick" / m) / "final.safetensors")
                       for m in MODELS}
    rc = run_and_kill(CLI_ARGS, out, out / "pelvic" / "quick", trigger, env)
    assert rc == -9, f"the run ended (rc={rc}) before {trigger} appeared"
    rep, buf = reporter()
    results = run_benchmark(config(out), rep)
    assert set(results["models"]) == set(MODELS)
    _assert_same_as_uninterrupted(out, ref)
    return buf.getvalue()


def test_sigkill_inside_training_then_resume(base_run, tmp_path):
    log = _kill_resume(base_run, tmp_path, "pggan/training/*/checkpoints/ckpt-00000002.pt")
    assert "pggan: trained 6 steps" in log


@pytest.mark.slow
@pytest.mark.parametrize("trigger", [
    "pggan/.stages/train.json",          # between training and sampling
    "pggan/.stages/sample.json",         # during evaluation
    "ddpm/training/*/checkpoints/ckpt-00000004.pt",  # second model, inside training
    "ddpm/samples.npz",                  # while writing PNGs
])
def test_sigkill_at_other_points_then_resume(base_run, tmp_path, trigger):
    _kill_resume(base_run, tmp_path, trigger)
