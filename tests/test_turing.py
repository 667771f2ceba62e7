"""`genbench turing make`: the blinded study page and its key."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from turing_helpers import make_small_study, noisy, phantom_set

from genbench.errors import InputError, UsageError
from genbench.turing.study import StudyOptions, make_study, to_display_uint8


def _cli(capsys, *args) -> tuple[int, str, str]:
    from genbench.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="study-data">(.*?)</script>', html, re.DOTALL)
    assert m, "the page embeds its study data"
    return json.loads(m.group(1))


def _png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kinds.append(data[pos + 4:pos + 8].decode())
        pos += 12 + length
    return kinds


def _decode(src: str) -> tuple[np.ndarray, str, list[str]]:
    from PIL import Image

    assert src.startswith("data:image/png;base64,")
    raw = base64.b64decode(src.split(",", 1)[1])
    im = Image.open(io.BytesIO(raw))
    return np.asarray(im), im.mode, _png_chunks(raw)


def test_page_holds_no_truth(tmp_path):
    key = make_small_study(tmp_path / "s", n=8, seed=5)
    html = (tmp_path / "s" / "index.html").read_text(encoding="utf-8")
    data = _page_data(html)
    # Per item only an opaque id and the image, in the key's order, nothing else.
    assert [set(it) for it in data["items"]] == [{"id", "src"}] * 16
    assert [it["id"] for it in data["items"]] == [it["id"] for it in key["items"]]
    assert set(data) == {"study_id", "title", "readers", "items"}
    # No file name, source, index or truth label of any item appears anywhere on the page.
    outside = html.replace(_page_data_text(html), "")
    for it in key["items"]:
        assert it["source"] not in html
        assert f'"{it["truth"]}"' not in _page_data_text(html)
    for word in ("phantom", "sample_", "truth", "key.json", "phantom-real", "phantom-synth"):
        assert word not in html
    # The visible words "real"/"synthetic" are the buttons and instructions only: the same
    # count in every study, whatever its truth.
    other = make_small_study(tmp_path / "t", n=8, seed=6)
    html2 = (tmp_path / "t" / "index.html").read_text(encoding="utf-8")
    assert other["study_id"] != key["study_id"]
    outside2 = html2.replace(_page_data_text(html2), "")
    for word in ("real", "synthetic", "Real", "Synthetic"):
        assert outside.count(word) == outside2.count(word)
    # Ids: random hex, unique, unrelated to the truth or the position.
    ids = [it["id"] for it in data["items"]]
    assert len(set(ids)) == 16 and all(re.fullmatch(r"[0-9a-f]{10}", i) for i in ids)
    # Every image: 8-bit grayscale PNG of the same size with the same chunk types, no metadata.
    shapes, modes, chunks = set(), set(), set()
    for it in data["items"]:
        arr, mode, kinds = _decode(it["src"])
        shapes.add(arr.shape)
        modes.add(mode)
        chunks.add(tuple(k for k in kinds if k != "IDAT"))
    assert shapes == {(24, 24)} and modes == {"L"} and chunks == {("IHDR", "IEND")}
    # No network: a CSP that allows only embedded data, no external URL anywhere.
    assert "default-src 'none'; img-src data:" in html
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html)


def _page_data_text(html: str) -> str:
    return re.search(r'id="study-data">(.*?)</script>', html, re.DOTALL).group(1)


def test_images_shown_are_the_windowed_inputs(tmp_path):
    real = phantom_set(5, size=20, seed=1)
    synth = noisy(phantom_set(5, size=20, seed=2), 0.1)
    window = (-160.0, 240.0)
    key = make_study(real, synth, tmp_path / "s", StudyOptions(n=5, seed=0, window=window))
    data = _page_data((tmp_path / "s" / "index.html").read_text(encoding="utf-8"))
    for it, k in zip(data["items"], key["items"], strict=True):
        src = real if k["truth"] == "real" else synth
        arr, _, _ = _decode(it["src"])
        want = to_display_uint8(src.images[k["index"], 0].numpy(), real.mapping, window)
        np.testing.assert_array_equal(arr, want)
    # The window in HU: 40 HU (its centre) -> grey 128, -160 HU and below -> 0, 240 HU and up -> 255.
    m = real.mapping
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 1000.0])
    got = to_display_uint8(m.to_canonical(hu), m, window)
    np.testing.assert_array_equal(got, [0, 0, 128, 255, 255])
    np.testing.assert_array_equal(to_display_uint8(np.array([-1.0, 0.0, 1.0]), m, None), [0, 128, 255])


def test_draw_shuffle_and_determinism(tmp_path):
    a = make_small_study(tmp_path / "a", n=5, seed=7)
    b = make_small_study(tmp_path / "b", n=5, seed=7)
    assert (tmp_path / "a" / "index.html").read_bytes() == (tmp_path / "b" / "index.html").read_bytes()
    drop = lambda k: {x: v for x, v in k.items() if x not in ("created",)}
    assert drop(a) == drop(b)
    assert sum(it["truth"] == "synthetic" for it in a["items"]) == 5
    assert len({(it["truth"], it["index"]) for it in a["items"]}) == 10  # drawn without repeats
    assert a["page_sha256"] != make_small_study(tmp_path / "c", n=5, seed=8)["page_sha256"]
    # The order is shuffled: across seeds the first item is synthetic about half the time.
    real = phantom_set(3, size=8, seed=1)
    synth = noisy(phantom_set(3, size=8, seed=2), 0.2)
    first = [make_study(real, synth, tmp_path / f"o{s}", StudyOptions(n=3, seed=s))["items"][0]["truth"]
             for s in range(40)]
    assert 10 <= first.count("synthetic") <= 30
    positions = [it["position"] for it in a["items"]]
    assert positions == list(range(1, 11))


def test_make_refuses_bad_input(tmp_path):
    make_small_study(tmp_path / "s", n=2)
    with pytest.raises(InputError, match="already holds a study"):
        make_small_study(tmp_path / "s", n=2)
    real = phantom_set(4, size=16)
    with pytest.raises(InputError, match="has 4 image"):
        make_study(real, real, tmp_path / "x", StudyOptions(n=5))
    small = _imageset(torch.zeros(4, 1, 8, 8))
    with pytest.raises(UsageError, match="--size"):
        make_study(real, small, tmp_path / "y", StudyOptions(n=2))
    with pytest.raises(UsageError, match="twice"):
        make_study(real, real, tmp_path / "z", StudyOptions(n=2, readers=["A", "A"]))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _imageset(x):
    from genbench.imageset import ImageSet

    return ImageSet(x)


def _write_run(root: Path, size: int = 16, n: int = 40, seed: int = 0) -> Path:
    """A finished run's files as `genbench run` leaves them (data.json, results.json, samples)."""
    from genbench.data import prepare_dataset
    from genbench.io.atomic import atomic_write_json
    from genbench.runner import save_array_npz

    data = prepare_dataset("heart", size=size, n=n, seed=seed)
    run = root / "heart" / "quick"
    atomic_write_json(run / "data.json", {
        "name": "heart", "source": "phantom", "fingerprint": str(data.fingerprint), "size": size,
        "n_train": len(data.train), "n_test": len(data.test), "test_sha256": data.test.sha256(),
        "data_dir": None})
    atomic_write_json(run / "results.json", {"schema": "genbench.results/1", "settings": {"seed": seed}})
    samples = noisy(data.train.subset(list(range(len(data.test)))), 0.1).images[:, 0].numpy()
    (run / "ddpm").mkdir(parents=True)
    save_array_npz(run / "ddpm" / "samples.npz", images=samples)
    return run / "ddpm"


def test_make_from_a_run_folder(tmp_path, capsys):
    from genbench.data import prepare_dataset
    from genbench.turing.study import load_run_sets

    model = _write_run(tmp_path)
    real, synth, info = load_run_sets(model)
    assert torch.equal(real.images, prepare_dataset("heart", size=16, n=40, seed=0).test.images)
    assert info["dataset"] == "heart" and len(synth) == len(real)
    # Through the CLI: the run's dataset names the study and picks the window.
    rc, _, err = _cli(capsys, "turing", "make", model, "--out", tmp_path / "study", "--n", 4)
    assert rc == 0, err
    key = json.loads((tmp_path / "study" / "key.json").read_text())
    assert key["title"] == "heart" and key["provenance"]["model"] == "ddpm"
    # A run whose held-out set can no longer be rebuilt is refused with one line.
    meta = json.loads((model.parent / "data.json").read_text())
    meta["test_sha256"] = "0" * 64
    (model.parent / "data.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="cannot rebuild the held-out"):
        load_run_sets(model)


def test_cli_make_from_folders_and_errors(tmp_path, capsys):
    from genbench.io import write_png_folder

    real = phantom_set(6, size=16, seed=1)
    synth = noisy(phantom_set(6, size=16, seed=2), 0.2)
    write_png_folder(real, tmp_path / "real", bit_depth=16)
    write_png_folder(synth, tmp_path / "synth", bit_depth=16)
    cmd = ["turing", "make", tmp_path / "real", tmp_path / "synth", "--out", tmp_path / "st",
           "--n", "3", "--dataset", "pelvic", "--readers", "Ann,Bob", "--window", "-100,200"]
    rc, out, err = _cli(capsys, *cmd)
    assert rc == 0, err
    assert "send it to the readers" in out
    key = json.loads((tmp_path / "st" / "key.json").read_text())
    assert key["display"]["window"] == [-100.0, 200.0] and key["display"]["unit"] == "HU"
    assert key["readers"] == ["Ann", "Bob"] and key["title"] == "pelvic"
    # Again into the same folder: one line, exit 2, nothing overwritten.
    before = (tmp_path / "st" / "key.json").read_bytes()
    rc, _, err = _cli(capsys, *cmd)
    assert rc == 2 and "already holds a study" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (tmp_path / "st" / "key.json").read_bytes() == before
    rc, _, err = _cli(capsys, *cmd[:5], tmp_path / "st2", "--n", "9")
    assert rc == 2 and "needs --n 9" in err and str(tmp_path / "real") in err
    assert not (tmp_path / "st2").exists()
    # A usage mistake (no --out) is a usage error (exit 2), not an internal error.
    rc, _, err = _cli(capsys, *cmd[:4])
    assert rc == 2 and "--out" in err and "internal error" not in err
