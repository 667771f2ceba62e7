"""`genbench metrics REAL SYNTH`: happy path with --json, usage and input errors, --strict."""

from __future__ import annotations

import json

import pytest
import torch

try:
    from _inception_fixtures import inception_material
except ImportError:
    from tests._inception_fixtures import inception_material  # noqa: F401

from genbench.cli import main
from genbench.metrics.registry import REGISTRY

METRIC_NAMES = REGISTRY.default_names()


def _run(capsys, *args):
    rc = main(["metrics", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    return rc, out, err


def test_happy_path_writes_the_json_report(inception_material, tmp_path, capsys):
    m = inception_material
    out_json = tmp_path / "res" / "metrics.json"
    rc, out, err = _run(capsys, m.real_dir, m.synth_dir, "--metrics", "is,fid,kid,prc",
                        "--inception-weights", m.weights, "--cache-dir", m.cache_dir, "--device", "cpu",
                        "--floor", "--json", out_json, "-q")
    assert rc == 0, err
    assert "FID" in out and "floor" in out and "±" in out
    doc = json.loads(out_json.read_text())
    assert set(doc) >= {"genbench_version", "real", "synth", "metrics", "floor", "options"}
    assert doc["real"]["path"] == str(m.real_dir) and doc["real"]["n"] == len(m.real_u8)
    assert len(doc["synth"]["sha256"]) == 64
    assert set(doc["metrics"]) == set(REGISTRY.names())  # every registered metric
    for name in ("is", "fid", "kid", "precision", "recall"):
        assert doc["metrics"][name]["status"] == "ok" and doc["floor"][name]["status"] == "ok"
        assert isinstance(doc["metrics"][name]["value"], float)
    assert doc["metrics"]["ds"]["status"] == "unavailable"  # not requested
    # Re-running over our own earlier report is allowed (atomic replace).
    rc, _, err = _run(capsys, m.real_dir, m.synth_dir, "--metrics", "fid", "--inception-weights", m.weights,
                      "--cache-dir", m.cache_dir, "--json", out_json, "-q")
    assert rc == 0, err
    assert json.loads(out_json.read_text())["options"]["metrics"] == ["fid"]


@pytest.mark.parametrize("args, needle", [
    (["{missing}", "{synth}"], "no such file or folder"),
    (["{real}", "{synth}", "--metrics", "fid,nope"], "valid names: is, fid"),
    (["{real}", "{synth}", "--hu-window", "5"], "--hu-window expects LO,HI"),
    (["{real}", "{synth}", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["{real}", "{synth}", "--inception-weights", "{junk}", "--metrics", "fid", "--strict"], "junk.pth"),
])
def test_bad_input_exits_2_with_one_line(inception_material, tmp_path, capsys, args, needle):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not weights")
    subst = {"missing": tmp_path / "missing", "real": inception_material.real_dir,
             "synth": inception_material.synth_dir, "junk": junk}
    rc, out, err = _run(capsys, *[a.format(**subst) for a in args], "-q", "--cache-dir", tmp_path)
    assert rc == 2
    assert needle in err.replace("\n", " ")
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) <= 3  # one message (rich may wrap a long line)


def test_missing_weights_unavailable_or_strict_exit_2(inception_material, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    m = inception_material
    out_json = tmp_path / "m.json"
    rc, _, err = _run(capsys, m.real_dir, m.synth_dir, "--metrics", "is,fid", "--json", out_json, "-q",
                        "--cache-dir", tmp_path)
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    assert doc["metrics"]["fid"]["status"] == "unavailable"
    assert "--inception-weights" in doc["metrics"]["fid"]["reason"]
    rc, _, err = _run(capsys, m.real_dir, m.synth_dir, "--metrics", "is,fid", "--strict", "-q",
                        "--cache-dir", tmp_path)
    assert rc == 2 and "--inception-weights" in err and "Traceback" not in err


def test_json_never_overwrites_a_foreign_file(inception_material, tmp_path, capsys):
    target = tmp_path / "notes.json"
    target.write_text('{"mine": true}')
    rc, _, err = _run(capsys, inception_material.real_dir, inception_material.synth_dir, "--metrics", "fid",
                      "--json", target, "-q")
    assert rc == 2 and "refusing to overwrite" in err
    assert target.read_text() == '{"mine": true}'
