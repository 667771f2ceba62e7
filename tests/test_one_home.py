"""One home per concept: the device check, the cache root, the atomic writer, the file hash."""

from __future__ import annotations

import os

import pytest
import torch

from genbench.cache import cache_dir, cache_root
from genbench.devices import resolve_device
from genbench.errors import UsageError
from genbench.io.hashing import file_sha256

# --------------------------------------------------------------------------- devices


@pytest.fixture
def one_gpu(monkeypatch):
    """Pretend to be a machine with exactly one CUDA GPU (the checks only ask torch)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_resolve_device_on_a_cpu_machine(no_gpu):
    assert resolve_device(None) == resolve_device("auto") == resolve_device(" CPU ") == "cpu"
    for spec in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(UsageError, match=f"--device {spec}: no CUDA GPU is available"):
            resolve_device(spec)
    with pytest.raises(UsageError, match=r"--device must be cpu, cuda, cuda:N, mps or auto.*'tpu'"):
        resolve_device("tpu")
    with pytest.raises(UsageError, match="--device must be"):
        resolve_device("cuda:x")


def test_resolve_device_with_one_gpu(one_gpu):
    assert resolve_device(None) == "cuda"
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(UsageError, match=r"--device cuda:1: this machine has 1 CUDA GPU\(s\) \(cuda:0\)"):
        resolve_device("cuda:1")
    with pytest.raises(UsageError, match="^device cuda:3"):
        resolve_device("cuda:3", option="device")


def test_engine_and_models_use_the_same_check(one_gpu):
    from baselines.wgan_gp import create
    from genbench.training import EngineConfig

    with pytest.raises(UsageError, match="device cuda:1: this machine has 1 CUDA GPU"):
        EngineConfig(steps=1, batch_size=1, device="cuda:1").validate()
    with pytest.raises(UsageError, match="wgan-gp: device cuda:1: this machine has 1"):
        create("quick", resolution=16, device="cuda:1")


def test_run_rejects_a_missing_gpu_before_anything_happens(no_gpu, tmp_path, capsys):
    from genbench.cli import main

    rc = main(["run", "--dataset", "pelvic", "--models", "ddpm", "--device", "cuda:1",
               "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--device cuda:1: no CUDA GPU is available" in err
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- cache root


def test_cache_root_and_kinds(monkeypatch, tmp_path):
    monkeypatch.delenv("GENBENCH_CACHE_DIR", raising=False)
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_dir("features") == tmp_path / "c" / "features"
    monkeypatch.delenv("GENBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("datasets") == tmp_path / "xdg" / "genbench" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "genbench"
    with pytest.raises(ValueError):
        cache_dir("../escape")


def test_the_retired_variable_is_named_not_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("GENBENCH_CACHE", raising=False)
    monkeypatch.setenv("GENBENCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(UsageError, match=r"\$GENBENCH_CACHE_DIR is no longer read: set \$GENBENCH_CACHE"):
        cache_root()


def test_prepared_data_goes_under_the_cache_root(monkeypatch, tmp_path):
    from genbench.data.cache import default_cache_dir

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "datasets"


# --------------------------------------------------------------------------- atomic writer


def test_every_atomic_write_syncs_the_file_and_its_folder(monkeypatch, tmp_path):
    """The stream writer (checkpoints, data caches) and the bytes/JSON writers all fsync the
    file before the rename and the folder after it."""
    import numpy as np

    from genbench.data.cache import write_entry
    from genbench.io import atomic
    from genbench.io.atomic import atomic_write_json

    synced_files, synced_dirs = [], []
    real_fsync = os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        (synced_dirs if os.path.isdir(target) else synced_files).append(os.path.basename(target))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic_write_json(tmp_path / "a" / "r.json", {"x": 1})
    write_entry(tmp_path / "b", "key", {"x": np.zeros(3)}, {"m": 1})
    assert [f for f in synced_files if not f.endswith(".json")] and synced_dirs.count("b") == 2
    assert "a" in synced_dirs
    assert any(f.startswith(".r.json.") for f in synced_files)  # the temp file, before rename

    from genbench.training import EngineConfig, TrainingTask, fit_task

    class One(TrainingTask):
        def __init__(self):
            self.w = torch.nn.Linear(1, 1)

        def modules(self):
            return {"w": self.w}

        def build_optimizers(self, modules):
            return {"w": torch.optim.SGD(modules["w"].parameters(), lr=0.1)}

        def train_step(self, batch, step, engine):
            loss = engine.module("w")(batch).pow(2).mean()
            engine.optimizer("w").zero_grad()
            engine.backward(loss)
            engine.optimizer("w").step()
            return {"loss": loss.item()}

    synced_files.clear()
    synced_dirs.clear()
    fit_task(One(), torch.ones(4, 1), EngineConfig(steps=2, batch_size=2, device="cpu"),
             workdir=tmp_path / "run")
    assert "checkpoints" in synced_dirs
    assert any(f.startswith(".ckpt-00000002.pt.") for f in synced_files)


# --------------------------------------------------------------------------- file hash


def test_file_hash_is_memoised_until_the_file_changes(monkeypatch, tmp_path):
    import hashlib

    from genbench.io import hashing

    p = tmp_path / "w.bin"
    p.write_bytes(b"abc")
    reads = []
    real_open = open

    def counting_open(path, *a, **k):
        reads.append(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(hashing, "open", counting_open, raising=False)
    assert file_sha256(p) == hashlib.sha256(b"abc").hexdigest()
    assert file_sha256(str(p)) == hashlib.sha256(b"abc").hexdigest()
    assert len(reads) == 1  # the second call came from the memo
    p.write_bytes(b"abcd")  # another size: hashed again
    assert file_sha256(p) == hashlib.sha256(b"abcd").hexdigest() and len(reads) == 2


def test_one_file_hash_in_the_code():
    """No module outside genbench/io/hashing.py hashes files on its own."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    pattern = re.compile(r"def \w*(sha256_file|file_sha256)\w*\(")
    owners = [str(p.relative_to(root)) for pkg in ("genbench", "baselines", "mtddpm")
              for p in (root / pkg).rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert set(owners) == {"genbench/io/hashing.py"}, owners


def test_one_pixel_hash_with_a_fixed_byte_layout():
    """Image sets and labelled sets hash pixels the same way (cache keys depend on the layout)."""
    import hashlib
    import pathlib

    import numpy as np

    from genbench.imageset import ImageSet
    from genbench.utility.experiment import Labelled

    images = torch.linspace(-1, 1, 2 * 3 * 4).reshape(2, 1, 3, 4)
    labels = np.array([1, 0])
    by_hand = hashlib.sha256(b"(2, 1, 3, 4)" + images.numpy().astype("<f4").tobytes())
    assert ImageSet(images, sources=["a", "b"]).sha256() == by_hand.hexdigest()
    by_hand.update(labels.astype("<i8").tobytes())
    assert Labelled(images, labels).sha256() == by_hand.hexdigest()
    assert Labelled(images, labels[::-1].copy()).sha256() != by_hand.hexdigest()
    root = pathlib.Path(__file__).resolve().parents[1]
    owners = [str(p.relative_to(root)) for p in (root / "genbench").rglob("*.py")
              if "h.update(repr(tuple(" in p.read_text(encoding="utf-8")]
    assert owners == ["genbench/imageset.py"], owners


# --------------------------------------------------------------------------- progress


def test_training_and_sampling_report_through_the_one_progress_interface(tmp_path):
    """The engine's fit reports one ``train`` step through a genbench.progress factory,
    resumed fits start at their checkpoint, and the plain-log factory prints every 10%."""
    from baselines.wgan_gp import WGANGP, create
    from genbench.progress import plain_lines, prefixed
    from genbench.testing import toy_images

    seen: dict[str, list] = {}

    def factory(description, total):
        seen[description] = [total, 0]

        def advance(n, total=None):
            if total is not None:
                seen[description][0] = total
            seen[description][1] += n

        return advance

    opts = {**WGANGP.conformance["overrides"], "checkpoint_every": 2}
    g = create("quick", resolution=16, **opts)
    g.fit(toy_images(16, 16), steps=2, workdir=tmp_path, progress=prefixed(factory, "wgan: "))
    assert seen == {"wgan: train": [2, 2]}
    g = create("quick", resolution=16, **opts)
    g.fit(toy_images(16, 16), steps=5, workdir=tmp_path, progress=factory)
    assert seen["train"] == [5, 5]  # 2 counted at once from the checkpoint, then 3 steps

    lines = []
    advance = plain_lines(lines.append)("sample", 20)
    for _ in range(20):
        advance(1)
    assert [line.split(",")[0] for line in lines] == [f"sample: {2 * k}/20 ({10 * k}%)"
                                                      for k in range(1, 10)]


def test_reading_a_folder_reports_through_a_progress_factory(tmp_path):
    import numpy as np

    from genbench.io import read_image_folder

    for i in range(3):
        np.save(tmp_path / f"x{i}.npy", np.zeros((8, 8), dtype=np.uint8))
    seen = []
    read_image_folder(tmp_path, progress=lambda d, t: (seen.append((d, t)),
                                                       lambda n, total=None: seen.append(n))[1])
    assert seen == [("reading images", 3), 1, 1, 1]
