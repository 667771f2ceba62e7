"""The utility experiment end to end on the chest phantom: an oracle generator is as useful as
real data, a label-swapped one is worse than chance; determinism, caching, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench.cli import main
from genbench.data import prepare_dataset
from genbench.data.phantoms import generate_labelled_phantoms
from genbench.errors import InputError
from genbench.io.atomic import atomic_write_json
from genbench.utility import Labelled, UtilityConfig, classifier_config, run_utility
from genbench.utility.experiment import match_real, patient_groups
from genbench.utility.rundir import prepare_record


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # See test_utility_classifier: one thread is faster for tiny networks on a busy machine.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


STRENGTH = 3.0  # a clearly visible finding, so that a tiny classifier learns it in seconds


def _real(n: int = 300, size: int = 32):
    ds = prepare_dataset("chest", size=size, n=n, options={"labels": "phantom",
                                                         "finding_strength": STRENGTH})
    return (ds, Labelled(ds.train.images, ds.train_labels), Labelled(ds.test.images, ds.test_labels),
            patient_groups(ds.test.sources))


def _oracle(n: int, size: int, seed: int) -> Labelled:
    """Fresh phantom images of the right class from the phantom itself (another seed)."""
    ph = generate_labelled_phantoms("chest", n, size, seed=seed, strength=STRENGTH)
    x = torch.from_numpy(ph.images / 127.5 - 1.0)[:, None].float()
    return Labelled(x, ph.y)


def test_oracle_matches_real_and_label_swap_is_below_chance():
    ds, train, test, groups = _real()
    oracle = _oracle(400, 32, seed=101)
    swapped = Labelled(oracle.images, 1 - oracle.labels)
    cfg = UtilityConfig(classifier_config("test", steps=160), seeds=2, n_boot=1000, n_perm=999)
    res = run_utility(train, test, groups, ds.classes, {"oracle": oracle, "swap": swapped}, cfg)
    real = res["oracle"]["conditions"]["real"]["accuracy"]
    synth = res["oracle"]["conditions"]["synthetic"]["accuracy"]
    assert real["value"] > 0.6  # the task is learnable...
    assert real["ci"][0] <= synth["ci"][1] and synth["ci"][0] <= real["ci"][1]  # ...and CIs overlap
    swap = res["swap"]["conditions"]["synthetic"]["accuracy"]
    assert swap["value"] <= 0.5
    cmp = res["swap"]["comparisons"]["synthetic - real"]["accuracy"]
    assert cmp["diff"] < 0 and cmp["p_value"] < 0.05
    # Same size and class balance as the real training set; mixed = both.
    n = res["oracle"]["n"]
    assert n["synthetic"] == n["real"]
    assert {c: 2 * v for c, v in n["real"].items()} == n["mixed"]
    assert res["oracle"]["positive"] == "covid"
    # The real-only condition is shared: identical in both models' results.
    assert res["oracle"]["conditions"]["real"] == res["swap"]["conditions"]["real"]


def test_deterministic_and_cached(tmp_path):
    ds, train, test, groups = _real(n=90, size=16)
    pool = _oracle(150, 16, seed=7)
    cfg = UtilityConfig(classifier_config("test", steps=4), seeds=2, n_boot=200, n_perm=99)
    messages: list[str] = []
    a = run_utility(train, test, groups, ds.classes, {"m": pool}, cfg, cache_dir=tmp_path,
                    say=messages.append)
    assert sum("trained" in m for m in messages) == 6  # 3 conditions x 2 seeds
    b = run_utility(train, test, groups, ds.classes, {"m": pool}, cfg)  # no cache: retrains
    messages.clear()
    c = run_utility(train, test, groups, ds.classes, {"m": pool}, cfg, cache_dir=tmp_path,
                    say=messages.append)
    assert not any("trained" in m for m in messages)
    # Provenance: the mixed set is exactly the real images followed by the matched synthetic ones.
    synth = match_real(train, pool, ds.classes, "m")
    assert a["m"]["train_sha256"] == {"real": train.sha256(), "synthetic": synth.sha256(),
                                      "mixed": Labelled.concat(train, synth).sha256()}
    for r in (a, b, c):
        r["m"].pop("elapsed_s")
        r["m"].pop("train_seconds")
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.dumps(a, sort_keys=True) == json.dumps(c, sort_keys=True)


def test_match_real_takes_class_counts_and_reports_shortfalls():
    real = Labelled(torch.zeros(5, 1, 4, 4), np.array([0, 1, 1, 0, 1]))
    pool = Labelled(torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 4, 4).clone(),
                    np.array([1, 1, 0, 1, 0, 1, 0, 1]))
    got = match_real(real, pool, ["a", "b"], "m")
    assert sorted(got.labels.tolist()) == [0, 0, 1, 1, 1]
    assert got.images[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # the first of each class
    with pytest.raises(InputError, match="m: 1 synthetic image.* class 'a', .* needs 2"):
        match_real(real, Labelled(pool.images[:3], pool.labels[:3]), ["a", "b"], "m")


def _write_run(root, labelled: bool = True):
    """A run folder as `genbench run --utility` leaves it (data record + per-class samples)."""
    run = root / "chest" / "quick"
    options = {"labels": "phantom", "finding_strength": STRENGTH} if labelled else {}
    ds = prepare_dataset("chest", size=16, n=90, options=options)
    full = ds.summary() | {"prepare": prepare_record("chest", None, 16, 90, 0, ds.params["options"])}
    atomic_write_json(run / "data.json", full)
    # The reference chest run's results stand in for the run's own (the tables need metrics).
    ref = json.loads((Path(__file__).resolve().parents[1] / "reports/chest/results.json").read_text())
    ref["models"] = {"ddpm": ref["models"]["ddpm"]}
    atomic_write_json(run / "results.json", ref)
    pool = _oracle(120, 16, seed=3)
    atomic_write_json(run / "ddpm" / "config.json", {"model": "ddpm"})
    for k in (0, 1):
        x = pool.images[pool.labels == k][:, 0].numpy()
        (run / "ddpm" / f"class-{k}").mkdir(parents=True)
        np.savez(run / "ddpm" / f"class-{k}" / "samples.npz", images=x)
    return run


def test_command_writes_utility_json_and_results(tmp_path, capsys):
    run = _write_run(tmp_path)
    rc = main(["utility", str(run), "--preset", "test", "--steps", "3", "--seeds", "2"])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, out
    assert "synthetic" in out and "mixed" in out and "p=" in out
    assert captured.err.count("trained on") == 6
    res = json.loads((run / "ddpm" / "utility.json").read_text())
    assert res["schema"] == "genbench.utility/1" and res["classes"] == ["normal", "covid"]
    assert set(res["conditions"]) == {"real", "synthetic", "mixed"}
    results = json.loads((run / "results.json").read_text())
    assert results["models"]["ddpm"]["utility"]["conditions"] == res["conditions"]
    assert results["utility"]["real"] == res["conditions"]["real"]
    assert len(list((run / "utility" / "predictions").glob("*.npy"))) == 6
    assert "### Utility" in (run / "table.md").read_text()  # the run's tables are rebuilt
    # Again without options: the recorded settings are repeated, nothing is retrained.
    rc = main(["utility", str(run), "--json"])
    captured = capsys.readouterr()
    assert rc == 0 and "trained" not in captured.err
    assert json.loads(captured.out)["ddpm"]["conditions"] == res["conditions"]


def test_command_bad_input_is_one_line(tmp_path, capsys):
    run = _write_run(tmp_path, labelled=False)
    rc = main(["utility", str(run)])
    err = capsys.readouterr().err
    assert rc == 2 and "carry no class labels" in err and "--utility" in err
    assert len(err.strip().splitlines()) == 1
    rc = main(["utility", str(tmp_path / "nope")])
    assert rc == 2 and "run folder not found" in capsys.readouterr().err
    # Data that no longer match the run's (here: another image count) are refused.
    run = _write_run(tmp_path / "other")
    info = json.loads((run / "data.json").read_text())
    info["prepare"]["n"] = 93
    atomic_write_json(run / "data.json", info)
    rc = main(["utility", str(run)])
    err = capsys.readouterr().err
    assert rc == 2 and "differ from the run's (fingerprint changed" in err
