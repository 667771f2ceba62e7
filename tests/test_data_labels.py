"""Class labels: the phantoms' findings, folder-per-class and ChestX-ray14 finding labels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from genbench.cli import main
from genbench.data import prepare_dataset
from genbench.data.phantoms import (
    CHEST_FINDING_LABEL,
    LIVER_LESION_LABEL,
    generate_labelled_phantoms,
    generate_phantoms,
)
from genbench.errors import InputError, UsageError

# ----------------------------------------------------------------------------- phantoms


def test_chest_finding_is_reproducible_and_only_adds_opacity():
    a = generate_labelled_phantoms("chest", 60, 48, seed=3)
    b = generate_labelled_phantoms("chest", 60, 48, seed=3)
    c = generate_labelled_phantoms("chest", 60, 48, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.y, c.y) or not np.array_equal(a.images, c.images)
    assert a.classes == ("normal", "covid")
    plain, plain_masks, pid = generate_phantoms("chest", 60, 48, seed=3, return_patients=True)
    np.testing.assert_array_equal(a.patients, pid)
    neg, pos = a.y == 0, a.y == 1
    assert 0 < pos.sum() < 60
    # Class 0 is the plain phantom, bit for bit; class 1 differs from it only inside the lungs,
    # and only by whitening them (added attenuation, same noise).
    np.testing.assert_array_equal(a.images[neg], plain[neg])
    np.testing.assert_array_equal(a.masks[neg], plain_masks[neg])
    diff = a.images[pos] - plain[pos]
    lungs = np.isin(plain_masks[pos], (1, 2))
    # The heart's shadow overlaps the lungs (label 3 wins there); lung edges are soft (2 px).
    chest = ndimage.binary_dilation(np.isin(plain_masks[pos], (1, 2, 3)), np.ones((1, 3, 3), bool),
                                    iterations=2)
    assert diff.min() >= -1e-3
    assert np.abs(diff[~chest]).max() < 1e-3
    assert diff[lungs].mean() > 1.0  # gray levels
    # The finding has its own label, only in class 1, only in the lungs.
    assert (a.masks[pos] == CHEST_FINDING_LABEL).any()
    assert not (a.masks[neg] == CHEST_FINDING_LABEL).any()
    assert set(np.unique(plain_masks[pos][a.masks[pos] == CHEST_FINDING_LABEL])) <= {1, 2}
    # One class per synthetic patient (follow-up films share it).
    for p in np.unique(a.patients):
        assert len(set(a.y[a.patients == p])) == 1


def test_chest_finding_strength_and_prevalence():
    base, _ = generate_phantoms("chest", 90, 32, seed=1)
    off = generate_labelled_phantoms("chest", 90, 32, seed=1, strength=0.0)
    np.testing.assert_array_equal(off.images, base)  # strength 0: nothing drawn
    weak = generate_labelled_phantoms("chest", 90, 32, seed=1, strength=0.5)
    strong = generate_labelled_phantoms("chest", 90, 32, seed=1, strength=2.0)
    np.testing.assert_array_equal(weak.y, strong.y)
    pos = weak.y == 1
    assert (strong.images[pos] - base[pos]).mean() > 1.5 * (weak.images[pos] - base[pos]).mean()
    assert generate_labelled_phantoms("chest", 90, 32, seed=1, prevalence=0.0).y.sum() == 0
    assert generate_labelled_phantoms("chest", 90, 32, seed=1, prevalence=1.0).y.min() == 1
    many = generate_labelled_phantoms("chest", 900, 8, seed=2, prevalence=0.3)
    assert 0.22 < many.y.mean() < 0.38
    with pytest.raises(UsageError, match="prevalence"):
        generate_labelled_phantoms("chest", 10, 32, prevalence=1.5)
    with pytest.raises(UsageError, match="no labelled finding"):
        generate_labelled_phantoms("heart", 10, 32)


def test_liver_lesion_finding():
    ph = generate_labelled_phantoms("abdomen", 120, 64, seed=0)
    plain, masks = generate_phantoms("abdomen", 120, 64, seed=0)
    pos, neg = ph.y == 1, ph.y == 0
    assert 5 < pos.sum() < 60
    np.testing.assert_array_equal(ph.images[neg], plain[neg])
    lesion = ph.masks == LIVER_LESION_LABEL
    assert not lesion[neg].any()
    assert all(lesion[i].any() for i in np.flatnonzero(pos))  # class 1 <=> a lesion is visible
    # Lesions lie in the liver and are hypodense: darker than the liver around them.
    assert set(np.unique(masks[lesion])) == {6}
    for i in np.flatnonzero(pos)[:10]:
        ring = ndimage.binary_dilation(lesion[i], iterations=2) & (ph.masks[i] == 6)
        core = ndimage.binary_erosion(lesion[i]) if ndimage.binary_erosion(lesion[i]).any() else lesion[i]
        assert np.median(ph.images[i][core]) < np.median(ph.images[i][ring]) - 10


# ----------------------------------------------------------------------------- prepare


def test_prepare_labelled_phantom_keeps_the_split_and_caches(tmp_path):
    plain = prepare_dataset("chest", size=16, n=120)
    lab = prepare_dataset("chest", size=16, n=120, options={"labels": "phantom"},
                          cache_dir=tmp_path)
    assert lab.classes == ["normal", "covid"]
    assert lab.split["test_patients"] == plain.split["test_patients"]
    assert len(lab.train_labels) == len(lab.train) and len(lab.test_labels) == len(lab.test)
    neg = lab.train_labels == 0
    assert np.array_equal(lab.train.images[neg].numpy(), plain.train.images[neg].numpy())
    assert lab.fingerprint != plain.fingerprint
    counts = lab.summary()["class_counts"]
    assert counts["covid"]["test"] == int(lab.test_labels.sum())
    again = prepare_dataset("chest", size=16, n=120, options={"labels": "phantom"},
                            cache_dir=tmp_path)
    assert again.from_cache and again.classes == lab.classes
    np.testing.assert_array_equal(again.test_labels, lab.test_labels)
    # Defaults are filled in, so the explicit and the implicit request are the same data.
    explicit = prepare_dataset("chest", size=16, n=120, options={
        "labels": "phantom", "prevalence": 0.5, "finding_strength": 1.0})
    assert explicit.fingerprint == lab.fingerprint


def test_label_option_errors():
    with pytest.raises(UsageError, match="need --data"):
        prepare_dataset("chest", size=16, n=30, options={"labels": "folders"})
    with pytest.raises(UsageError, match="no labelled finding"):
        prepare_dataset("pelvic", size=16, n=30, options={"labels": "phantom"})
    with pytest.raises(UsageError, match="only to the labelled phantom"):
        prepare_dataset("chest", size=16, n=30, options={"finding_strength": 2.0})
    with pytest.raises(InputError, match="too few images.*'covid' 0 train"):
        prepare_dataset("chest", size=16, n=30, options={"labels": "phantom", "prevalence": 0.0})


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 24), value, dtype=np.uint8)).save(path)


def test_folder_per_class_layout(tmp_path):
    root = tmp_path / "data"
    for i in range(6):
        _png(root / "COVID" / "sub" / f"COVID-{i}.png", 200)
        _png(root / "Normal" / f"Normal-{i}.png", 50)
    ds = prepare_dataset("chest", data_dir=root, size=16, options={"labels": "folders"},
                         cache_dir=tmp_path / "cache", test_fraction=0.4)
    assert ds.classes == ["Normal", "COVID"]  # the normal folder is class 0
    for part, labels in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        bright = part.images.mean(dim=(1, 2, 3)).numpy() > 0
        np.testing.assert_array_equal(bright, labels == 1)
        for src, y in zip(part.sources, labels):
            assert src.startswith("COVID-") == (y == 1)
    assert "labelled Normal vs COVID" in ds.description
    again = prepare_dataset("chest", data_dir=root, size=16, options={"labels": "folders"},
                            cache_dir=tmp_path / "cache", test_fraction=0.4)
    assert again.from_cache
    np.testing.assert_array_equal(again.train_labels, ds.train_labels)
    # A cap keeps both classes in proportion (cases interleaved, not one folder first).
    capped = prepare_dataset("chest", data_dir=root, size=16, n=8,
                             options={"labels": "folders"}, use_cache=False, test_fraction=0.5)
    y = np.concatenate([capped.train_labels, capped.test_labels])
    assert len(y) == 8 and y.sum() == 4


def test_folder_layout_errors(tmp_path):
    _png(tmp_path / "COVID" / "a.png", 200)
    with pytest.raises(InputError, match="one sub-folder per class"):
        prepare_dataset("chest", data_dir=tmp_path, size=16, options={"labels": "folders"},
                        use_cache=False)
    (tmp_path / "Normal").mkdir()
    with pytest.raises(InputError, match="no PNG files"):
        prepare_dataset("chest", data_dir=tmp_path, size=16, options={"labels": "folders"},
                        use_cache=False)
    for i in range(4):
        _png(tmp_path / "Normal" / f"n{i}.png", 20)
    with pytest.raises(InputError, match=r"'COVID' has too few.*'Normal' \d train / \d held-out, "
                                         r"'COVID' \d train / \d held-out"):
        prepare_dataset("chest", data_dir=tmp_path, size=16, options={"labels": "folders"},
                        use_cache=False, test_fraction=0.5)


def _chestxray14(root: Path) -> None:
    rows = [
        ("00000001_000.png", "Pneumonia", 200),
        ("00000001_001.png", "No Finding", 20),
        ("00000002_000.png", "Effusion|Pneumonia", 200),
        ("00000003_000.png", "Effusion", 120),  # neither class: left out
        ("00000004_000.png", "No Finding", 20),
        ("00000005_000.png", "Pneumonia", 200),
        ("00000006_000.png", "No Finding", 20),
        ("00000007_000.png", "Pneumonia|Mass", 200),
        ("00000008_000.png", "No Finding", 20),
        ("00000009_000.png", "No Finding", 20),
        ("00000010_000.png", "Pneumonia", 200),
        ("00000011_000.png", "Pneumonia", 200),
        ("00000012_000.png", "Pneumonia", 200),
        ("00000013_000.png", "No Finding", 20),
    ]
    with open(root / "Data_Entry_2017.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID"])
        for name, finding, value in rows:
            w.writerow([name, finding, 0, str(int(name[:8]))])
            _png(root / "images" / name, value)


def test_chestxray14_finding_labels(tmp_path):
    _chestxray14(tmp_path)
    ds = prepare_dataset("chest", data_dir=tmp_path, size=16, options={"label_finding": "Pneumonia"},
                         use_cache=False, test_fraction=0.5)
    assert ds.classes == ["No Finding", "Pneumonia"]
    sources = ds.train.sources + ds.test.sources
    labels = np.concatenate([ds.train_labels, ds.test_labels])
    assert len(sources) == 13 and not any("00000003_000" in s for s in sources)
    images = np.concatenate([ds.train.images, ds.test.images])
    np.testing.assert_array_equal(images.mean(axis=(1, 2, 3)) > 0, labels == 1)
    # Patient 1 has one image of each class; the patient stays on one side of the split.
    p1 = [s.startswith("1:") for s in ds.test.sources]
    assert any(p1) != any(s.startswith("1:") for s in ds.train.sources)
    with pytest.raises(InputError, match="no row lists the finding 'Hernia'; findings in the CSV: "
                                         "Effusion, Mass, Pneumonia"):
        prepare_dataset("chest", data_dir=tmp_path, size=16, options={"label_finding": "Hernia"},
                        use_cache=False)
    with pytest.raises(UsageError, match="ChestX-ray14's CSV"):
        prepare_dataset("pelvic", data_dir=tmp_path, size=16, options={"label_finding": "X"},
                        use_cache=False)
    (tmp_path / "Data_Entry_2017.csv").unlink()
    with pytest.raises(InputError, match="needs ChestX-ray14's Data_Entry_2017.csv"):
        prepare_dataset("chest", data_dir=tmp_path, size=16, options={"label_finding": "Pneumonia"},
                        use_cache=False)


def test_cli_prepare_with_labels(tmp_path, capsys):
    _chestxray14(tmp_path)
    rc = main(["data", "prepare", "chest", "--data", str(tmp_path), "--size", "16",
               "--label-finding", "Pneumonia", "--test-fraction", "0.5",
               "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert rc == 0 and "labelled No Finding vs Pneumonia" in out and "Pneumonia" in out
    rc = main(["data", "prepare", "chest", "--size", "16", "--n", "60", "--labels", "phantom"])
    assert rc == 0 and "normal vs covid" in capsys.readouterr().out
    rc = main(["data", "prepare", "chest", "--size", "16", "--labels", "folders"])
    err = capsys.readouterr().err
    assert rc == 2 and "need --data" in err and len(err.strip().splitlines()) == 1


def test_data_show_names_the_label_sources(capsys):
    assert main(["data", "show", "chest"]) == 0
    out = capsys.readouterr().out
    assert "class labels    phantom: normal vs covid" in out and "--label-finding NAME" in out
