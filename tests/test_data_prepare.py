"""prepare_dataset: patient-level split, cache behaviour, descriptions; and the `genbench data` CLI."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch

from genbench.cli import main
from genbench.data import get_preset, prepare_dataset, split_patients
from genbench.errors import InputError, UsageError


def patient_of(source: str) -> str:
    return source.split(":", 1)[0]


def test_phantom_split_by_patient_deterministic():
    a = prepare_dataset("pelvic", size=16, n=60, seed=5)
    b = prepare_dataset("pelvic", size=16, n=60, seed=5)
    c = prepare_dataset("pelvic", size=16, n=60, seed=6)
    assert a.source == "phantom"
    assert a.description == "pelvic: built-in phantom, 60 slices (6 synthetic patients), 16x16"
    train_p = {patient_of(s) for s in a.train.sources}
    test_p = {patient_of(s) for s in a.test.sources}
    assert train_p.isdisjoint(test_p) and len(train_p | test_p) == 6
    assert sorted(test_p) == a.split["test_patients"] and len(test_p) == 1  # round(0.2 * 6)
    assert len(a.train) + len(a.test) == 60
    assert a.split == b.split and torch.equal(a.train.images, b.train.images)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    x = torch.cat([a.train.images, a.test.images])
    assert x.min() >= -1 and x.max() <= 1 and x.shape[1:] == (1, 16, 16)
    # The mapping takes canonical values back to HU: air -> -1024.
    assert float(a.mapping.to_raw(torch.tensor(-1.0))) == pytest.approx(-1024.0)
    assert a.mapping.unit == "HU"


def test_split_patients_rules():
    ids = [f"p{i}" for i in range(10)]
    tr, te = split_patients(ids * 3, seed=0, test_fraction=0.3)
    assert len(te) == 3 and set(tr) | set(te) == set(ids) and not set(tr) & set(te)
    assert split_patients(ids, seed=0, test_fraction=0.3) == (tr, te)
    with pytest.raises(InputError, match="at least 2 patients"):
        split_patients(["only"], seed=0, test_fraction=0.2)
    with pytest.raises(UsageError):
        split_patients(ids, seed=0, test_fraction=1.0)


def test_heart_phantom_minmax_and_chest_mapping():
    h = prepare_dataset("heart", size=16, n=20, seed=0)
    x = torch.cat([h.train.images, h.test.images])
    assert x.min() == -1.0 and x.max() == pytest.approx(1.0)  # each synthetic scan spans [-1, 1]
    ch = prepare_dataset("chest", size=16, n=12, seed=0)
    assert ch.mapping.to_raw(1.0) == pytest.approx(255.0) and ch.mapping.to_raw(
        -1.0
    ) == pytest.approx(0.0)


def write_btcv(root, patients=3):
    (root / "img").mkdir(parents=True)
    (root / "label").mkdir()
    rng = np.random.default_rng(0)
    for p in range(patients):
        img = rng.normal(40, 20, size=(24, 20, 4)).astype(np.float32)
        lab = np.zeros(img.shape, np.uint8)
        lab[5:10, 5:10, 1:3] = 1
        aff = np.diag([1.52, 1.52, 3.0, 1.0])
        nib.save(nib.Nifti1Image(img, aff), str(root / "img" / f"img{p:04d}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, aff), str(root / "label" / f"label{p:04d}.nii.gz"))


def test_real_cache_roundtrip_and_invalidation(tmp_path):
    data, cache = tmp_path / "btcv", tmp_path / "cache"
    write_btcv(data)
    first = prepare_dataset("abdomen", data_dir=data, size=32, cache_dir=cache, seed=1)
    assert first.source == "real" and not first.from_cache
    assert first.description == f"abdomen: NIfTI from {data}, 3 patients, 6 slices, 32x32"
    assert {patient_of(s) for s in first.train.sources}.isdisjoint(
        {patient_of(s) for s in first.test.sources}
    )
    manifests = list(cache.glob("abdomen-*.json"))
    assert len(manifests) == 1 and (cache / manifests[0].name.replace(".json", ".npz")).is_file()
    second = prepare_dataset("abdomen", data_dir=data, size=32, cache_dir=cache, seed=1)
    assert second.from_cache and second.fingerprint == first.fingerprint
    assert torch.equal(second.train.images, first.train.images) and second.split == first.split
    assert second.train.sources == first.train.sources
    # Touched but identical: still a hit. Changed content: rebuilt with a new fingerprint.
    f = data / "img" / "img0001.nii.gz"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert prepare_dataset("abdomen", data_dir=data, size=32, cache_dir=cache, seed=1).from_cache
    img = np.full((24, 20, 4), 500.0, np.float32)
    nib.save(nib.Nifti1Image(img, np.diag([1.52, 1.52, 3.0, 1.0])), str(f))
    third = prepare_dataset("abdomen", data_dir=data, size=32, cache_dir=cache, seed=1)
    assert not third.from_cache and third.fingerprint != first.fingerprint
    # Other parameters get their own entry.
    prepare_dataset("abdomen", data_dir=data, size=16, cache_dir=cache, seed=1)
    assert len(list(cache.glob("abdomen-*.json"))) == 2


def test_real_n_caps_slices(tmp_path):
    write_btcv(tmp_path / "d")
    ds = prepare_dataset("abdomen", data_dir=tmp_path / "d", size=16, n=3, use_cache=False)
    assert len(ds.train) + len(ds.test) == 3


def test_presets_declared():
    p = get_preset("pelvic")
    assert p.spacing == (2.0, 2.0, 2.0) and p.canvas == 256 and p.intensity.background == -1024.0
    assert get_preset("abdomen").spacing == (3.0, 1.52, 1.52)
    assert get_preset("chest").spacing is None and get_preset("chest").max_images == 5500
    with pytest.raises(UsageError, match="unknown dataset preset"):
        get_preset("brain")


def test_cli_show_prepare_preview(tmp_path, capsys):
    assert main(["data", "show", "pelvic"]) == 0
    out = capsys.readouterr().out
    assert "2 x 2 x 2 mm" in out and "-1024" in out
    assert main(["data", "prepare", "abdomen", "--n", "20", "--size", "16"]) == 0
    assert (
        "abdomen: built-in phantom, 20 slices (2 synthetic patients), 16x16"
        in capsys.readouterr().out
    )
    grid = tmp_path / "grid.png"
    assert main(["data", "preview", "heart", "--out", str(grid), "--size", "16", "--n", "4"]) == 0
    from PIL import Image

    with Image.open(grid) as im:
        assert im.size == (2 * 16 + 2, 2 * 16 + 2)
    assert main(["data", "preview", "heart", "--out", str(grid), "--size", "16", "--n", "4"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["data", "show", "brain"]) == 2
    assert main(["data", "prepare", "pelvic", "--data", str(tmp_path / "none")]) == 2
    assert "none: data folder not found" in capsys.readouterr().err
