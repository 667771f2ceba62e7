"""`genbench check`: the CI gate on metric thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import two_datasets

from genbench.cli import main
from genbench.errors import InputError
from genbench.report.check import check_results, load_thresholds, parse_thresholds


def _outcome(doc):
    return check_results(two_datasets(), parse_thresholds(doc))


def test_pass_with_explicit_and_bare_bounds():
    out = _outcome({
        "pelvic": {"ddpm": {"fid": "<= 80", "ds": 0.5, "is": 2.0},
                   "*": {"fds": 1.0}, "floor": {"fid": "< 6"}},
        "*": {"mt-ddpm": {"fid": [">= 1", "<= 60"]}},
    })
    assert out.passed, out.violations
    # ddpm fid, ds, is + 3 fds + floor fid + 2 mt-ddpm fid
    assert out.checked == 9


def test_bare_number_follows_direction():
    # IS higher is better: a bare 2.7 means "IS >= 2.7" -> ddpm (2.5) fails, wgan-gp (3.0) passes
    out = _outcome({"pelvic": {"*": {"is": 2.7}}})
    assert [str(v) for v in out.violations] == [
        "pelvic/ddpm: is = 2.5 violates >= 2.7 (higher is better)"]
    # FID lower is better: a bare 50 means "FID <= 50"
    out = _outcome({"pelvic": {"*": {"fid": 50}}})
    assert [v.model for v in out.violations] == ["wgan-gp"]


def test_every_violation_is_listed_and_missing_things_fail():
    out = _outcome({
        "pelvic": {"ddpm": {"fid": "<= 10", "ds": "<= 0.1"}, "stylegan": {"fid": 100}},
        "chest": {"ddpm": {"is": 1.0}},
        "heart": {"ddpm": {"fid": 100}},
    })
    msgs = [str(v) for v in out.violations]
    assert "pelvic/ddpm: fid = 40 violates <= 10 (lower is better)" in msgs
    assert "pelvic/ddpm: ds = 0.3 violates <= 0.1 (lower is better)" in msgs
    assert "pelvic/stylegan: no results for model 'stylegan'" in msgs
    assert any(m.startswith("chest/ddpm: is is n/a") for m in msgs)
    assert any(m.startswith("heart/ddpm: no results for dataset 'heart'") for m in msgs)
    assert len(msgs) == 5


def test_allow_missing():
    out = check_results(two_datasets(), parse_thresholds(
        {"allow_missing": True, "chest": {"ddpm": {"is": 1.0}}}))
    assert out.passed and out.checked == 0


@pytest.mark.parametrize("doc, match", [
    ({"pelvic": {"ddpm": {"psnr": 3}}}, "unknown metric 'psnr'"),
    ({"pelvic": {"ddpm": {"fid": "about 80"}}}, "cannot read bound"),
    ({"pelvic": {"ddpm": {"fid": True}}}, "expected a number"),
    ({"pelvic": {"ddpm": 80}}, "must be a table"),
    ({"pelvic": 3}, "must be a \\[dataset.model\\] table"),
    ({}, "no bounds"),
    ({"allow_missing": "yes", "pelvic": {"ddpm": {"fid": 1}}}, "allow_missing"),
])
def test_malformed_documents(doc, match):
    with pytest.raises(InputError, match=match):
        parse_thresholds(doc)


def _setup(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for r in two_datasets():
        d = runs / r["dataset"] / "quick"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(r))
    return runs


def test_cli_exit_codes(tmp_path, capsys):
    runs = _setup(tmp_path)
    good = tmp_path / "good.toml"
    good.write_text('[pelvic.ddpm]\nfid = "<= 80"\nds = 1.5\n[chest."*"]\nfds = 1\n')
    assert main(["check", str(runs), "--thresholds", str(good)]) == 0
    assert "check passed" in capsys.readouterr().out

    bad = tmp_path / "bad.toml"
    bad.write_text('[pelvic.ddpm]\nfid = "<= 30"\n[pelvic.wgan-gp]\nis = ">= 5"\n'
                   '[chest.ddpm]\nis = 1\n')
    assert main(["check", str(runs), "--thresholds", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "3 violation(s)" in err
    assert "pelvic/ddpm: fid = 40 violates <= 30" in err
    assert "pelvic/wgan-gp: is = 3 violates >= 5" in err
    assert "chest/ddpm: is is n/a" in err
    assert main(["check", str(runs), "-t", str(bad), "--allow-missing"]) == 1
    assert "2 violation(s)" in capsys.readouterr().err

    broken = tmp_path / "broken.toml"
    broken.write_text("[pelvic.ddpm\nfid = 3\n")
    assert main(["check", str(runs), "-t", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert "malformed TOML" in err and str(broken) in err and len(err.splitlines()) == 1
    assert main(["check", str(runs), "-t", str(tmp_path / "missing.toml")]) == 2


def test_load_thresholds_reports_file(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text('[pelvic.ddpm]\nfid = "=< 3"\n')
    with pytest.raises(InputError, match=str(p)):
        load_thresholds(p)


def test_derived_thresholds_pass_on_reference_and_catch_regressions(tmp_path, capsys):
    runs = _setup(tmp_path)
    t = tmp_path / "derived.toml"
    assert main(["check", str(runs), "-t", str(t), "--write", "--margin", "0.1"]) == 0
    text = t.read_text()
    assert '["pelvic"."mt-ddpm"]' in text and '["chest"."floor"]' in text
    assert "fid = 39.0500  # reference 35.5" in text  # 35.5 * 1.1, lower is better
    assert "is = 2.7000  # reference 3" in text  # 3.0 * 0.9, higher is better
    rules = load_thresholds(t)
    assert check_results(two_datasets(), rules).passed
    worse = two_datasets()
    worse[0]["models"]["mt-ddpm"]["metrics"]["metrics"]["fid"]["value"] = 40.0
    assert [str(v) for v in check_results(worse, rules).violations] == [
        "pelvic/mt-ddpm: fid = 40 violates <= 39.05 (lower is better)"]
    assert main(["check", str(runs), "-t", str(t), "--write"]) == 2  # never overwrites
