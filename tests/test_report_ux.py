"""Report and table UX: unavailable metrics collapse into one line per shared reason."""

from __future__ import annotations

from report_fixtures import metrics_json, results_json

from genbench.report.html import _notes, table_html
from genbench.report.tables import build_table, collect

REASON = "Inception-v3 weights not found at /somewhere. genbench never downloads weights. More text."


def _results():
    def mj(fds):
        out = metrics_json(fds=(fds, 0.1), ds=0.2, **{m: None for m in ("is", "fid", "kid", "precision", "recall")})
        for m in ("is", "fid", "kid", "precision", "recall"):
            out["metrics"][m]["reason"] = REASON
        return out

    return [results_json("pelvic", {"ddpm": mj(1.0), "wgan-gp": mj(2.0)}, floor=mj(0.1))]


def test_html_notes_give_a_shared_reason_once_and_drop_empty_blocks():
    results = _results()
    notes = _notes(results[0])
    assert len(notes) == 1
    assert notes[0].startswith("IS, FID, KID, Precision, Recall: ") and REASON in notes[0]
    html = table_html(collect(results))
    assert "FDS" in html and "DS" in html and "FID" not in html and "n/a" not in html


def test_markdown_single_dataset_is_models_by_metrics_with_one_note():
    md = build_table(_results(), "md")
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Model"))
    assert header == "| Model | FDS ↓ | DS ↓ |"
    assert sum(1 for line in lines if line.startswith("Not available")) == 1
    assert "Not available (IS ↑, FID ↓, KID ↓, Precision ↑, Recall ↑): Inception-v3 weights not found" in md
    assert md.count("weights not found") == 1
    # Two datasets keep the paper's layout (metric blocks x datasets).
    two = _results() + [dict(_results()[0], dataset="chest")]
    assert build_table(two, "md").splitlines()[0] == "| Metric | Model | pelvic | chest |"


def test_run_summary_keeps_names_and_values_readable_in_a_narrow_terminal(capsys, monkeypatch):
    from genbench.commands.run import print_summary

    monkeypatch.setenv("COLUMNS", "80")
    values = {m: 0.123456 for m in ("ds", "mem", "c2st", "frd", "msssim", "vendi")}
    models = {name: metrics_json(fds=(64.684321, 1.0), **values) for name in ("wgan-gp", "stylegan", "mt-ddpm")}
    print_summary(results_json("pelvic", models, floor=metrics_json(fds=(0.148, 0.01), **values)))
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80
    for name in ("wgan-gp", "stylegan", "mt-ddpm", "floor"):
        assert f"│ {name}" in out
    assert "64.684" in out and "…" not in out
