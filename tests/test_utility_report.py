"""The Utility block in tables (Markdown, CSV, JSON, LaTeX) and the HTML report."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import pytest

from genbench.report.tables import build_table
from genbench.report.utility import collect_utility

REF = Path(__file__).resolve().parents[1] / "reports" / "chest" / "results.json"


def _cond(v: float, ci=(0.0, 1.0), std=0.01) -> dict:
    return {m: {"value": v, "ci": list(ci), "std": std, "per_seed": [v] * 3}
            for m in ("accuracy", "auc", "sensitivity", "specificity")}


def _cmp(diff: float, p: float) -> dict:
    return {m: {"diff": diff, "ci": [diff - 0.1, diff + 0.1], "p_value": p}
            for m in ("accuracy", "auc", "sensitivity", "specificity")}


def _utility(model: str, synth: float, mixed: float, p_synth: float, p_mixed: float) -> dict:
    return {
        "schema": "genbench.utility/1", "model": model, "classes": ["normal", "covid"],
        "positive": "covid", "n": {"real": {"normal": 270, "covid": 210},
                                   "test": {"normal": 48, "covid": 72}},
        "n_test_patients": 40, "classifier": {"arch": "resnet18-narrow", "steps": 300},
        "seeds": [0, 1, 2], "ci_level": 0.95,
        "conditions": {"real": _cond(0.78, (0.70, 0.85)), "synthetic": _cond(synth),
                       "mixed": _cond(mixed)},
        "comparisons": {"synthetic - real": _cmp(synth - 0.78, p_synth),
                        "mixed - real": _cmp(mixed - 0.78, p_mixed)},
    }


def _plain() -> dict:
    """The committed chest run without its own utility entries (the tests add their own)."""
    r = json.loads(REF.read_text())
    r.pop("utility", None)
    for entry in r["models"].values():
        entry.pop("utility", None)
    return r


@pytest.fixture
def results() -> dict:
    r = _plain()
    r["models"]["ddpm"]["utility"] = _utility("ddpm", 0.70, 0.83, 0.01, 0.2)
    r["models"]["wgan-gp"]["utility"] = _utility("wgan-gp", 0.52, 0.75, 0.001, 0.04)
    return r


def test_markdown_single_dataset(results):
    plain = build_table([_plain()], "md")
    md = build_table([results], "md")
    assert md.startswith(plain)  # the fidelity table is unchanged; the block follows it
    block = md[len(plain):]
    assert "### Utility" in block and "normal vs covid; classifier resnet18-narrow" in block
    lines = [ln for ln in block.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in lines[1:]] == [
        "| *real*", "| wgan-gp: synthetic", "| wgan-gp: real + synthetic",
        "| ddpm: synthetic", "| ddpm: real + synthetic"]  # the paper's model order
    assert "0.780 [0.700, 0.850]" in lines[1]
    assert "0.520 [0.000, 1.000]<sup>-</sup>" in lines[2] and "-0.260 (p = 0.001)" in lines[2]
    assert "0.750 [0.000, 1.000]<sup>-</sup>" in lines[3]  # p = 0.04 < 0.05, worse
    assert "<sup>" not in lines[5] and "+0.050 (p = 0.2)" in lines[5]


def test_paper_layout_across_datasets(results):
    other = copy.deepcopy(results)
    other["dataset"] = "abdomen"
    del other["models"]["wgan-gp"]["utility"]
    columns, rows = collect_utility([results, other])
    assert columns == ["chest", "abdomen"]
    md = build_table([results, other], "md")
    block = md[md.index("### Utility"):]
    assert "| Metric | Training data | chest | abdomen |" in block
    row = next(ln for ln in block.splitlines() if ln.startswith("| Accuracy ↑ | *real*"))
    assert row.count("0.780") == 2
    wg = next(ln for ln in block.splitlines() if "| wgan-gp: synthetic |" in ln)
    assert wg.rstrip().endswith("| n/a |")  # abdomen has no utility result for wgan-gp


def test_csv_json_latex_html(results, tmp_path):
    rows = list(csv.reader(io.StringIO(build_table([results], "csv"))))
    head = rows[0]
    ut = [dict(zip(head, r)) for r in rows if r[0].startswith("utility_")]
    assert len(ut) == 4 * 5
    acc = {r["model"]: r for r in ut if r["metric"] == "utility_accuracy"}
    assert acc["real"]["reference"] == "true" and float(acc["ddpm: synthetic"]["chest"]) == 0.70
    obj = json.loads(build_table([results], "json"))
    assert obj["utility"]["rows"][0]["label"] == "real"
    assert obj["utility"]["rows"][1]["cells"]["chest"]["accuracy"]["p_value"] == 0.001
    tex = build_table([results], "latex", standalone=True)
    assert tex.endswith("\\end{document}\n")
    assert tex.index("Utility:") < tex.index("\\end{document}") and "$^{-}$" in tex
    assert "0.780 $\\pm$ 0.080" in tex
    from genbench.report.html import build_html

    (tmp_path / "results.json").write_text(json.dumps(results))
    page = build_html(tmp_path)
    assert "<h2>Utility</h2>" in page and "wgan-gp: real + synthetic" in page


def test_no_utility_no_block():
    r = _plain()
    for fmt in ("md", "csv", "json", "latex"):
        assert "tility" not in build_table([r], fmt)
