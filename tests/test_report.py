"""Figures and the self-contained HTML report, on a hand-made run folder."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from report_fixtures import metrics_json, results_json

from genbench.cli import main
from genbench.report.figures import make_figures, read_losses
from genbench.report.html import build_html


def _fake_run(root: Path) -> dict:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    np.savez(root / "real_preview.npz", images=rng.uniform(-1, 1, (8, 16, 16)).astype("f4"))
    models = {}
    for i, m in enumerate(["ddpm", "wgan-gp"]):
        d = root / m
        d.mkdir()
        np.savez(d / "samples.npz", images=rng.uniform(-1, 1, (10, 16, 16)).astype("f4"))
        np.savez(d / "fds_embedding.npz", embedding=rng.normal(size=(20, 2)).astype("f4"),
                 n_real=np.array(10))
        (d / "losses.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n" for s in range(0, 50, 10))
            + '{"step": 5'  # a line cut by a kill must be ignored
        )
        mj = metrics_json(fid=10.0 + i, fds=(0.5 + i, 0.1), ds=0.2)
        mj["metrics"]["ds"]["nearest_ssim_real"] = list(rng.uniform(0.2, 0.6, 10))
        mj["metrics"]["ds"]["nearest_ssim_synth"] = list(rng.uniform(0.3, 0.9, 10))
        mj["metrics"]["is"] = {"value": None, "std": None, "status": "unavailable",
                               "reason": "Inception <weights> not found"}
        models[m] = mj
    res = results_json("pelvic", models, floor=metrics_json(fid=1.0, fds=(0.01, 0.0), ds=0.01))
    res["models"]["ddpm"]["stages"] = {"train": "a" * 64}
    res["models"]["ddpm"]["num_parameters"] = 12345
    (root / "results.json").write_text(json.dumps(res))
    return res


def test_make_figures_png_and_pdf(tmp_path):
    root = tmp_path / "pelvic" / "quick"
    res = _fake_run(root)
    paths = make_figures(root, res)
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{n}.{e}" for n in ("samples", "tsne", "nearest_ssim", "losses")
                           for e in ("png", "pdf"))
    for p in paths:
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")
    # Drawing twice gives the same PNG bytes (no timestamps in the files).
    first = (root / "figures" / "tsne.png").read_bytes()
    make_figures(root, res)
    assert (root / "figures" / "tsne.png").read_bytes() == first


def test_figure_without_inputs_is_skipped_not_faked(tmp_path):
    root = tmp_path / "r"
    res = _fake_run(root)
    for m in ("ddpm", "wgan-gp"):
        (root / m / "fds_embedding.npz").unlink()
    made = {p.stem for p in make_figures(root, res)}
    assert "tsne" not in made and "samples" in made
    assert not (root / "figures" / "tsne.png").exists()


def test_read_losses_skips_cut_lines(tmp_path):
    p = tmp_path / "losses.jsonl"
    p.write_text('{"step": 0, "loss": 1}\n{"step": 1, "lo')
    assert read_losses(p) == [{"step": 0, "loss": 1}]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.external = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v and not v.startswith("data:") and not v.startswith("#"):
                self.external.append(v)
            if tag == "img" and k == "src" and v.startswith("data:image/png;base64,"):
                self.images += 1


def test_html_is_self_contained(tmp_path):
    root = tmp_path / "pelvic" / "quick"
    _fake_run(root)
    page = build_html(root)  # no figures yet: drawn on the way
    parser = _Links()
    parser.feed(page)
    assert parser.external == [] and parser.images == 4
    assert '<td class="best">10.00</td>' in page  # FID best = ddpm
    assert "real-vs-real (floor)" in page
    assert "Inception &lt;weights&gt; not found" in page  # escaped note for the n/a cells
    assert "a" * 64 in page and "12,345" in page
    assert not re.search(r"<script", page)


def test_cli_report(tmp_path, capsys):
    root = tmp_path / "pelvic" / "quick"
    _fake_run(root)
    assert main(["report", str(root)]) == 0
    assert (root / "report.html").is_file()
    out = tmp_path / "mine.html"
    out.write_text("mine")
    assert main(["report", str(root), "--out", str(out)]) == 2
    assert out.read_text() == "mine"
    assert main(["report", str(root), "--out", str(out), "--force"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path / "missing")]) == 2
