"""Comparison tables: layout, direction-aware bold, floor row, formats, CLI."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import metrics_json, results_json, two_datasets

from genbench.cli import main
from genbench.errors import UsageError
from genbench.report.tables import build_table, collect, latex_escape


def _best(table, metric):
    block = next(b for b in table.blocks if b.metric == metric)
    return {(row.model, col) for row in block.rows for col in row.best}


def test_best_is_direction_aware_and_floor_never_bold():
    table = collect(two_datasets())
    # FID lower is better: mt-ddpm on pelvic (35.5); on chest ddpm 50.0 and wgan-gp 50.004 tie
    # at the shown precision (50.00), so both are bold. The floor (5.0 / 3.0) is lower but
    # is a reference row.
    assert _best(table, "fid") == {("mt-ddpm", "pelvic"), ("ddpm", "chest"), ("wgan-gp", "chest")}
    # IS higher is better: wgan-gp 3.0 on pelvic; chest: ddpm is n/a, nobody else has IS.
    assert _best(table, "is") == {("wgan-gp", "pelvic")}
    # DS lower is better; wgan-gp is n/a on chest and must not win there.
    assert _best(table, "ds") == {("wgan-gp", "pelvic"), ("ddpm", "chest")}


def test_layout_blocks_rows_columns():
    table = collect(two_datasets())
    assert table.columns == ["pelvic", "chest"]
    assert [b.metric for b in table.blocks] == ["is", "fid", "fds", "ds"]
    # paper order of models, floor last as reference
    assert [r.model for r in table.blocks[0].rows] == [
        "wgan-gp", "ddpm", "mt-ddpm", "real-vs-real (floor)"]
    assert table.blocks[0].rows[-1].reference


def test_markdown_bold_std_na_and_arrows():
    md = build_table(two_datasets(), "md")
    lines = md.splitlines()
    assert lines[0] == "| Metric | Model | pelvic | chest |"
    assert "| FID ↓ | wgan-gp | 80.00 | **50.00** |" in lines
    assert "| IS ↑ | wgan-gp | **3.00 ± 0.20** | n/a |" in lines
    assert "|  | *real-vs-real (floor)* | 5.00 | 3.00 |" in lines
    assert "|  | ddpm | **0.500 ± 0.100** | 0.400 ± 0.100 |" in lines


def test_csv_is_machine_readable():
    rows = list(csv.DictReader(io.StringIO(build_table(two_datasets(), "csv"))))
    fid_mt = next(r for r in rows if r["metric"] == "fid" and r["model"] == "mt-ddpm")
    assert float(fid_mt["pelvic"]) == 35.5 and fid_mt["better"] == "lower"
    is_ddpm = next(r for r in rows if r["metric"] == "is" and r["model"] == "ddpm")
    assert is_ddpm["chest"] == "" and float(is_ddpm["pelvic_std"]) == 0.1
    floor = [r for r in rows if r["reference"] == "true"]
    assert len(floor) == 4


def test_json_round_trip():
    obj = json.loads(build_table(two_datasets(), "json"))
    assert obj["columns"] == ["pelvic", "chest"]
    fid = next(b for b in obj["blocks"] if b["metric"] == "fid")
    mt = next(r for r in fid["rows"] if r["model"] == "mt-ddpm")
    assert mt["cells"]["pelvic"] == {"value": 35.5, "std": None, "status": "ok", "best": True}


def test_latex_booktabs_escaping_and_structure():
    res = two_datasets()
    res[1]["dataset"] = "my_data&co"
    res[0]["models"]["odd_model%"] = res[0]["models"]["ddpm"]
    tex = build_table(res, "latex", standalone=True)
    assert tex.count(r"\toprule") == 1 and tex.count(r"\bottomrule") == 1
    assert r"\cline" not in tex
    # one \midrule after the header and one between each pair of metric blocks
    assert tex.count(r"\midrule") == 1 + 3
    assert r"my\_data\&co" in tex and r"odd\_model\%" in tex
    assert r"Metric & Model & pelvic & my\_data\&co \\" in tex
    assert r"FID $\downarrow$ & wgan-gp & 80.00 & \textbf{50.00} \\" in tex
    assert r"\textbf{0.500 $\pm$ 0.100}" in tex
    assert r"\textit{real-vs-real (floor)}" in tex
    assert tex.lstrip().startswith("%") and r"\begin{document}" in tex and tex.rstrip().endswith(
        r"\end{document}")
    # pure ASCII: no arrows or ± left for the TeX engine to choke on
    assert tex.isascii()
    # every data row has the same number of cells as the column spec (ll + one r per dataset)
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    for line in body.splitlines():
        if line.strip().endswith(r"\\"):
            assert line.count(" & ") == 3, line


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine installed")
def test_latex_compiles(tmp_path):
    (tmp_path / "t.tex").write_text(build_table(two_datasets(), "latex", standalone=True))
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                          cwd=tmp_path, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_latex_escape():
    assert latex_escape("a_b & 50% #1 {x} ~ ^") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{}")
    assert latex_escape("1 ± 2 ↑") == r"1 $\pm$ 2 $\uparrow$"


def test_unknown_format_and_metric():
    with pytest.raises(UsageError, match="format"):
        build_table(two_datasets(), "xlsx")
    with pytest.raises(UsageError, match="unknown metric"):
        build_table(two_datasets(), "md", metrics=["psnr"])


def test_same_dataset_two_presets_gets_preset_in_column():
    a = results_json("pelvic", {"ddpm": metrics_json(fid=1.0)}, preset="quick")
    b = results_json("pelvic", {"ddpm": metrics_json(fid=2.0)}, preset="paper")
    assert collect([a, b]).columns == ["pelvic (quick)", "pelvic (paper)"]


def _write_runs(root: Path) -> list[Path]:
    dirs = []
    for r in two_datasets():
        d = root / r["dataset"] / r["preset"]
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(r))
        dirs.append(d)
    return dirs


def test_cli_table(tmp_path, capsys):
    dirs = _write_runs(tmp_path / "runs")
    assert main(["table", *map(str, dirs), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "| Metric | Model | pelvic | chest |" in out
    # a root folder is searched recursively (sorted: chest before pelvic)
    out_file = tmp_path / "t.tex"
    assert main(["table", str(tmp_path / "runs"), "-f", "latex", "--out", str(out_file)]) == 0
    assert "Metric & Model & chest & pelvic" in out_file.read_text()
    # never overwrite unasked
    assert main(["table", str(tmp_path / "runs"), "-f", "csv", "--out", str(out_file)]) == 2
    assert "Metric & Model" in out_file.read_text()
    assert main(["table", str(tmp_path / "nope")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["table", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_same_dataset_and_preset_from_two_roots_gets_root_in_column():
    a = results_json("pelvic", {"ddpm": metrics_json(fid=1.0)})
    b = results_json("pelvic", {"ddpm": metrics_json(fid=2.0)})
    a["_path"], b["_path"] = "runA/pelvic/quick/results.json", "runB/pelvic/quick/results.json"
    assert collect([a, b]).columns == ["pelvic (quick, runA)", "pelvic (quick, runB)"]
