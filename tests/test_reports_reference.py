"""The committed reference outputs in reports/ stay consistent with the code that made them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genbench.cli import main
from genbench.report.tables import build_table

REPORTS = Path(__file__).resolve().parents[1] / "reports"
REFERENCE_RUNS = sorted(REPORTS.glob("*/results.json"))


def test_reference_results_pass_the_committed_thresholds(capsys: pytest.CaptureFixture) -> None:
    assert REFERENCE_RUNS, "reports/ holds no reference results.json"
    rc = main(["check", *map(str, REFERENCE_RUNS), "--thresholds", str(REPORTS / "thresholds.toml")])
    assert rc == 0, capsys.readouterr()


@pytest.mark.parametrize("results_path", REFERENCE_RUNS, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("fmt,name", [("md", "table.md"), ("csv", "table.csv")])
def test_tables_regenerate_byte_for_byte(results_path: Path, fmt: str, name: str) -> None:
    committed = results_path.parent / name
    results = json.loads(results_path.read_text())
    assert build_table([results], fmt).strip() == committed.read_text().strip()


def test_a_worse_model_fails_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = json.loads(REFERENCE_RUNS[0].read_text())
    results_file = tmp_path / "results.json"
    # Doubling every FDS value must break at least one bound derived with margin 0.5.
    doubled = json.loads(json.dumps(results))
    for entry in _metric_entries(doubled, "fds"):
        entry["value"] = entry["value"] * 2.0
    results_file.write_text(json.dumps(doubled))
    assert _metric_entries(doubled, "fds")
    rc = main(["check", str(results_file), "--thresholds", str(REPORTS / "thresholds.toml")])
    out = capsys.readouterr()
    assert rc == 1
    assert "fds" in out.out + out.err
    assert "internal error" not in out.out + out.err


def _metric_entries(obj: object, name: str) -> list[dict]:
    found: list[dict] = []
    if isinstance(obj, dict):
        for key, val in obj.items():
            if key == name and isinstance(val, dict) and isinstance(val.get("value"), float):
                found.append(val)
            else:
                found.extend(_metric_entries(val, name))
    elif isinstance(obj, list):
        for val in obj:
            found.extend(_metric_entries(val, name))
    return found


CROSS_MODALITY = ["chest", "heart", "pelvic", "abdomen"]


@pytest.mark.parametrize("fmt,name", [("md", "table.md"), ("csv", "table.csv")])
def test_cross_modality_table_regenerates_from_the_four_runs(fmt: str, name: str) -> None:
    results = [json.loads((REPORTS / ds / "results.json").read_text()) for ds in CROSS_MODALITY]
    text = build_table(results, fmt, metrics=["fds", "ds", "c2st", "frd", "mem"])
    assert text.strip() == (REPORTS / name).read_text().strip()
    header = text.splitlines()[0]
    assert all(ds in header for ds in CROSS_MODALITY)


OFFLINE_METRICS = ("fds", "ds", "mem", "c2st", "frd", "msssim", "vendi")


@pytest.mark.parametrize("results_path", REFERENCE_RUNS, ids=lambda p: p.parent.name)
def test_committed_runs_carry_this_waves_evaluation(results_path: Path) -> None:
    """The references are what a current `genbench run` writes: a size-matched floor, every offline
    metric with a confidence interval for every model and the floor, the 2000-step quick MT-DDPM."""
    results = json.loads(results_path.read_text())
    floor = results["floor"]
    n_test = results["data"]["n_test"]
    info = floor["floor_info"]
    assert info["size_matched"] is True and info["n_real"] == info["n_synth"] == n_test
    parts = {"floor": floor["metrics"], **{m: e["metrics"]["metrics"] for m, e in results["models"].items()}}
    assert set(parts) >= {"floor", "wgan-gp", "pggan", "stylegan", "ddpm", "mt-ddpm"}
    for who, metrics in parts.items():
        for name in OFFLINE_METRICS:
            entry = metrics[name]
            assert entry["status"] == "ok", (who, name, entry.get("reason"))
            lo, hi = entry["ci"]
            assert lo <= entry["value"] <= hi and entry["ci_level"] == 0.95, (who, name)
    assert all(entry["samples"]["n"] == n_test for entry in results["models"].values())
    assert results["models"]["mt-ddpm"]["train"]["steps"] == 2000


def test_the_chest_reference_carries_the_utility_experiment() -> None:
    from genbench.report.utility import has_utility

    results = json.loads((REPORTS / "chest" / "results.json").read_text())
    assert has_utility([results])
    text = (REPORTS / "chest" / "table.md").read_text()
    assert "### Utility" in text and all(m in text for m in ("wgan-gp", "pggan", "stylegan", "ddpm", "mt-ddpm"))
