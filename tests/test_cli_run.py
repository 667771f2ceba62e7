"""`genbench run` on the command line: errors are one line with exit code 2; --help lists options."""

from __future__ import annotations

import pytest

from genbench.cli import main


def test_unknown_model_is_one_clear_line(tmp_path, capsys):
    rc = main(["run", "--dataset", "pelvic", "--models", "ddpm,gpt", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "unknown model 'gpt'; installed generators:" in err and "ddpm" in err
    assert len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing was started


@pytest.mark.parametrize("args, match", [
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--metrics", "fid,psnr"], "unknown metric name(s): psnr"),
    (["--set", "lr"], "--set expects key=value"),
    (["--dataset", "knee"], "knee"),
])
def test_bad_options_exit_2(tmp_path, capsys, args, match):
    base = ["run", "--dataset", "pelvic", "--models", "pggan", "--out", str(tmp_path), "--steps", "1"]
    rc = main(base + args)
    assert rc == 2
    assert match in capsys.readouterr().err


def test_help_lists_the_options(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich shortens long option names to fit narrow terminals
    rc = main(["run", "--help"])
    out = capsys.readouterr().out
    assert rc == 0
    for opt in ("--models", "--dataset", "--preset", "--data", "--out", "--device", "--size",
                "--n-samples", "--seed", "--force", "--inception-weights", "--steps", "--metrics",
                "--set"):
        assert opt in out, opt
