"""`mem` through the registry: `genbench metrics REAL SYNTH --train TRAIN`, its one-line errors,
its options, and the memoised nearest-training search shared with the floor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

try:
    from _inception_fixtures import inception_material
except ImportError:
    from tests._inception_fixtures import inception_material  # noqa: F401

from genbench.cli import main
from genbench.imageset import ImageSet
from genbench.metrics import mem as mem_module
from genbench.metrics.pipeline import EvalOptions, evaluate


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """TRAIN, REAL (other patients), FRESH (yet other patients), COPIES (noisy training images)."""
    from genbench.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("mem")
    prepared = prepare_dataset("chest", size=24, n=400, use_cache=False)
    train = prepared.train.images[:, 0].numpy()
    test = prepared.test.images[:, 0].numpy()
    rng = np.random.default_rng(0)
    src = rng.integers(0, len(train), 30)
    copies = np.clip(train[src] + 0.02 * rng.standard_normal((30, 24, 24)), -1, 1).astype(np.float32)
    paths = {}
    for name, arr in {"train": train, "real": test[:40], "fresh": test[40:70], "copies": copies,
                      "small": train[:, :23, :23]}.items():
        paths[name] = root / f"{name}.npy"
        np.save(paths[name], arr)
    paths["src"] = src
    return paths


def _run(capsys, *args):
    rc = main(["metrics", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    return rc, out, err


def test_metrics_with_train_flags_copies(folders, tmp_path, capsys):
    out_json = tmp_path / "m.json"
    rc, out, err = _run(capsys, folders["real"], folders["copies"], "--train", folders["train"],
                        "--metrics", "privacy", "--json", out_json, "-q", "--device", "cpu")
    assert rc == 0, err
    assert "Mem" in out
    doc = json.loads(out_json.read_text())
    m = doc["metrics"]["mem"]
    assert m["status"] == "ok" and m["value"] == 1.0
    assert m["ci"][1] == 1.0 and m["ci"][0] < 1.0 and "Clopper-Pearson" in m["ci_method"]
    assert m["params"]["quantile"] == 0.99 and m["params"]["n_flagged"] == 30
    assert m["params"]["flagged"]["train_index"] == [int(folders["src"][i])
                                                     for i in m["params"]["flagged"]["synth_index"]]
    assert len(m["nearest_train_ssim_synth"]) == 30 and len(m["nearest_train_ssim_real"]) == 40
    assert m["params"]["train_sha256"]


def test_metrics_with_train_and_a_fresh_sample(folders, tmp_path, capsys):
    out_json = tmp_path / "f.json"
    rc, _, err = _run(capsys, folders["real"], folders["fresh"], "--train", folders["train"],
                      "--metrics", "mem", "--mem-quantile", "0.9", "--json", out_json, "-q")
    assert rc == 0, err
    m = json.loads(out_json.read_text())["metrics"]["mem"]
    assert m["params"]["quantile"] == 0.9 and m["params"]["threshold_rank"] == 37  # ceil(0.9 * 41)
    assert m["value"] <= 0.2


def test_without_train_mem_is_unavailable_and_says_why(folders, capsys):
    rc, out, err = _run(capsys, folders["real"], folders["copies"], "--metrics", "mem", "-q")
    assert rc == 0, err
    assert "unavailable" in out and "--train" in out


@pytest.mark.parametrize("train, extra, needle", [
    ("{missing}", [], "no such file or folder (--train)"),
    ("{small}", [], "--train: training images are 23x23 but REAL images are 24x24"),
    ("{real}", [], "--train: REAL is the same images as TRAIN"),
    ("{train}", ["--mem-quantile", "1"], "--mem-quantile must be in [0.5, 1)"),
    ("{train}", ["--mem-transforms", "rotate"], "--mem-transforms: unknown transform 'rotate'"),
])
def test_bad_train_or_options_exit_2_with_one_line(folders, tmp_path, capsys, train, extra, needle):
    path = train.format(missing=tmp_path / "nope", small=folders["small"], real=folders["real"],
                        train=folders["train"])
    rc, out, err = _run(capsys, folders["real"], folders["copies"], "--train", path,
                        "--metrics", "mem", "-q", *extra)
    assert rc == 2
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_floor_and_models_reuse_reals_nearest_training_search(folders, monkeypatch):
    """REAL is searched once per measure; the floor (rows of REAL) and a second model reuse it."""
    calls: list[int] = []
    original = mem_module.nearest_training

    def counting(images, train, **kw):
        calls.append(len(images))
        return original(images, train, **kw)

    monkeypatch.setattr(mem_module, "nearest_training", counting)
    load = lambda key: ImageSet(torch.from_numpy(np.load(folders[key]))[:, None])  # noqa: E731
    real, train = load("real"), load("train")
    opts = EvalOptions(metrics=("mem",), floor=True, device="cpu")
    shared: dict = {}
    first = evaluate(real, load("copies"), opts, train=train, _shared=shared)
    assert sorted(calls) == [30, 30, 40, 40]  # ssim + pearson, REAL and SYNTH; floor reused REAL
    floor = first.floor["mem"]
    assert floor.status == "ok" and floor.n_real == 20 and floor.n_synth == 20
    assert floor.value <= 0.25
    evaluate(real, load("fresh"), opts, train=train, _shared=shared)
    assert sorted(calls) == [30, 30, 30, 30, 40, 40]  # only the new synthetic set


def test_inception_distance_joins_when_weights_exist(inception_material, folders, tmp_path, capsys):
    from genbench.metrics.mem import inception_nearest, nearest_feature_distance

    m = inception_material
    small = tmp_path / "small"
    small.mkdir()
    train = np.load(folders["train"])[:40]
    real = np.load(folders["real"])[:12]
    copies = np.clip(train[:8] + 0.01, -1, 1)
    for name, arr in (("train", train), ("real", real), ("copies", copies)):
        np.save(small / f"{name}.npy", arr)
    out_json = tmp_path / "i.json"
    rc, _, err = _run(capsys, small / "real.npy", small / "copies.npy", "--train", small / "train.npy",
                      "--metrics", "mem", "--inception-weights", m.weights, "--cache-dir", m.cache_dir,
                      "--json", out_json, "-q")
    assert rc == 0, err
    params = json.loads(out_json.read_text())["metrics"]["mem"]["params"]
    inc = params["by_measure"]["inception"]
    assert len(params["inception_weights_sha256"]) == 64
    assert inc["median_synth"] > inc["median_real"]  # copies: smaller pool3 distance (similarity = -d)
    assert inc["threshold"] <= 0.0
    near = inception_nearest(np.array([[0.0, 3.0], [1.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 2.0]]))
    assert near.value.tolist() == pytest.approx([-np.sqrt(2.0), -1.0]) and near.index.tolist() == [1, 1]
    assert nearest_feature_distance(np.zeros((1, 2)), np.ones((1, 2)))[0][0] == pytest.approx(np.sqrt(2))
