"""Model-vs-model tests in results.json, significance markers and CIs in tables, CI bounds in check."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from genbench.report import significance
from genbench.report.check import check_results, load_thresholds, parse_thresholds
from genbench.report.tables import build_table


def _metrics_json(value: float, reps: np.ndarray, *, real_sha: str = "r" * 64, seed: int = 0) -> dict:
    lo, hi = np.quantile(reps, [0.025, 0.975]) - (reps.mean() - value)
    entry = {"value": value, "std": None, "ci": [float(lo), float(hi)], "ci_level": 0.95, "status": "ok",
             "reason": None, "params": {"bootstrap_seed": seed, "bootstrap_replicates": len(reps)},
             "n_real": 100, "n_synth": 100, "bootstrap": [float(v) for v in reps]}
    return {"real": {"sha256": real_sha, "n": 100}, "metrics": {"fid": entry}}


def _results(gap: float, *, noise: float = 0.2) -> dict:
    """Three models whose replicates share a real-set component (as paired replicates do)."""
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 3.0, 400)  # the real set's resampling noise: common to all models
    models = {}
    for name, v in (("ddpm", 10.0), ("wgan-gp", 10.0 + gap), ("pggan", 30.0)):
        reps = v + shared + rng.normal(0, noise, 400)
        models[name] = {"metrics": _metrics_json(v, reps)}
    floor_reps = 2.0 + shared + rng.normal(0, noise, 400)
    return {"dataset": "pelvic", "preset": "quick", "models": models, "floor": _metrics_json(2.0, floor_reps)}


def test_comparisons_pair_models_and_the_floor() -> None:
    res = _results(gap=1.0)
    comp = significance.comparisons(res)["fid"]
    assert comp["best"] == "ddpm" and comp["runner_up"] == "wgan-gp"
    assert comp["p"]["wgan-gp"] < 0.01 and comp["p"]["pggan"] < 0.01  # paired: the shared noise cancels
    assert comp["significant"]
    assert set(comp["p_vs_floor"]) == {"ddpm", "wgan-gp", "pggan"} and comp["p_vs_floor"]["ddpm"] < 0.01
    # a gap well inside the models' own noise is not significant
    close = significance.comparisons(_results(gap=0.01, noise=2.0))["fid"]
    assert not close["significant"] and close["p_holm"]["wgan-gp"] > 0.05
    # unpaired replicates (another real set) are refused, not compared
    other = _results(gap=1.0)
    other["models"]["wgan-gp"]["metrics"]["real"]["sha256"] = "x" * 64
    assert significance.comparisons(other)["fid"]["p"]["wgan-gp"] is None


def test_attach_strips_replicates_and_survives_json() -> None:
    res = significance.attach(_results(gap=1.0))
    text = json.dumps(res)
    assert '"bootstrap"' not in text.replace('"bootstrap_seed"', "").replace('"bootstrap_replicates"', "")
    assert json.loads(text)["comparisons"]["fid"]["best"] == "ddpm"


def test_tables_show_intervals_and_mark_significance() -> None:
    sig = significance.attach(_results(gap=1.0))
    md = build_table([sig], "md")
    best_line = next(line for line in md.splitlines() if line.startswith("| ddpm"))
    assert "†" in best_line and "[" in best_line and "]" in best_line
    assert "Holm" in md
    not_sig = significance.attach(_results(gap=0.01, noise=2.0))
    assert "†" not in next(line for line in build_table([not_sig], "md").splitlines() if line.startswith("| ddpm"))
    tex = build_table([sig], "latex")
    assert r"$^\dagger$" in tex and r"$\pm$" in tex and "half-width" in tex
    lo, hi = sig["models"]["ddpm"]["metrics"]["metrics"]["fid"]["ci"]
    from genbench.report.tables import decimals

    d = decimals("fid")
    assert f"{10:.{d}f} $\\pm$ {(hi - lo) / 2:.{d}f}" in tex
    js = json.loads(build_table([sig], "json"))
    assert js["blocks"][0]["rows"][0]["model"] == "wgan-gp"  # paper order; values unchanged
    # results without precomputed comparisons (replicates still embedded): computed on the fly
    raw = _results(gap=1.0)
    assert "†" in next(line for line in build_table([raw], "md").splitlines() if line.startswith("| ddpm"))


def test_floor_note_says_n_is_half_when_the_floor_is_halves() -> None:
    res = significance.attach(_results(gap=1.0))
    res["floor"]["floor_info"] = {"method": "halves", "size_matched": False, "n_real": 50, "n_synth": 50,
                                  "note": "two disjoint halves of REAL: n = N/2 = 50 (N = 100)"}
    assert "n = N/2 = 50" in build_table([res], "md")
    res["floor"]["floor_info"] = {"method": "size-matched", "size_matched": True, "n_real": 100,
                                  "n_synth": 100, "note": "REAL vs 100 images"}
    assert "N/2" not in build_table([res], "md")


def test_check_bounds_on_the_interval(tmp_path) -> None:
    res = significance.attach(_results(gap=1.0))
    ci_hi = res["models"]["ddpm"]["metrics"]["metrics"]["fid"]["ci"][1]
    f = tmp_path / "t.toml"
    # dotted keys make `fid` a table, so its value bound is then `fid.value`; quoted keys mix freely
    f.write_text(f'[pelvic.ddpm]\nfid.ci_hi = {ci_hi + 0.1}\nfid.value = 11\n"fid.ci_lo" = ">= 0"\n')
    th = load_thresholds(f)
    assert {r.field for r in th.rules} == {"ci_hi", "ci_lo", "value"}
    assert check_results([res], th).passed
    f.write_text(f"[pelvic.ddpm]\nfid.ci_hi = {ci_hi - 0.1}\n")
    out = check_results([res], load_thresholds(f))
    assert not out.passed and "fid.ci_hi" in str(out.violations[0])
    bare = copy.deepcopy(res)
    bare["models"]["ddpm"]["metrics"]["metrics"]["fid"]["ci"] = None
    out = check_results([bare], load_thresholds(f))
    assert "no confidence interval" in str(out.violations[0])
    with pytest.raises(Exception, match="unknown field"):
        parse_thresholds({"pelvic": {"ddpm": {"fid": {"ci_mid": 3}}}})
