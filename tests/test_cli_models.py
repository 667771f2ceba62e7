"""`genbench models`: lists installed generators with parameter counts; broken ones show errors."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest

from genbench.cli import main


def test_models_lists_presets_with_parameter_counts(capsys):
    rc = main(["models", "--preset", "quick", "--json"])
    assert rc == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in ("ddpm", "wgan-gp"):
        assert rows[name]["preset"] == "quick" and rows[name]["error"] is None
        assert rows[name]["resolution"] == 32
    from baselines.ddpm import create

    assert rows["ddpm"]["parameters"] == create("quick").num_parameters()
    assert rows["wgan-gp"]["breakdown"].keys() == {"G", "D"}


def test_models_table_and_broken_plugins(capsys, monkeypatch):
    eps = [
        EntryPoint("ddpm", "baselines.ddpm:create", "genbench.generators"),
        EntryPoint("ghost", "no_such_module_xyz:create", "genbench.generators"),
        # Imports fine, fails when called with the factory signature:
        EntryPoint("bad-preset", "baselines.ddpm:DDPMConfig", "genbench.generators"),
    ]
    import importlib.metadata as md

    import genbench.protocol as protocol

    monkeypatch.setattr(md, "entry_points", lambda group=None: eps)
    monkeypatch.setattr(protocol, "entry_points", lambda group=None: eps)
    rc = main(["models", "--preset", "quick"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "32x32" in lines["ddpm"] and " M" in lines["ddpm"]
    assert "error: cannot import: ModuleNotFoundError" in lines["ghost"]
    assert "error: TypeError:" in lines["bad-preset"] and "preset" in lines["bad-preset"]


@pytest.mark.parametrize("argv", [["models", "--help"]])
def test_models_help(argv, capsys):
    assert main(argv) == 0
    assert "parameters" in capsys.readouterr().out.lower()
