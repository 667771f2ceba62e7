"""The validity study: defects do what they say, the study sees what the README claims, and the
committed study (reports/validity/) agrees with the README's matrix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench.validity import DEFECTS, Cell, apply_defect, detection, make_sets, patient_of

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "reports" / "validity"


@pytest.fixture(scope="module")
def sets():
    return make_sets("heart", n=60, size=16, seed=0)


def test_sets_are_patient_disjoint_and_sized(sets) -> None:
    pats = {name: {patient_of(s) for s in part.sources}
            for name, part in (("real", sets.real), ("pool", sets.pool), ("fit", sets.fit))}
    assert not pats["real"] & pats["pool"] and not pats["real"] & pats["fit"] and not pats["pool"] & pats["fit"]
    assert len(sets.real) == len(sets.clean) == 60 and len(sets.pool) >= 8 * 60
    assert {patient_of(s) for s in sets.clean.sources} <= pats["pool"]


def test_defects_by_construction(sets) -> None:
    clean = sets.clean.images
    for d in DEFECTS:
        assert torch.equal(apply_defect(sets, d, 0.0).images, clean)  # severity 0 is the clean set
        for sev in DEFECTS[d].levels:
            x = apply_defect(sets, d, sev).images
            assert x.shape == clean.shape and x.min() >= -1 and x.max() <= 1
            assert torch.equal(x, apply_defect(sets, d, sev).images)  # reproducible
    noisy = apply_defect(sets, "noise", 0.05).images
    inside = (clean > -0.9) & (clean < 0.9)  # away from clipping the noise is exactly N(0, 0.05^2)
    assert float((noisy - clean)[inside].std()) == pytest.approx(0.05, rel=0.05)
    dup = apply_defect(sets, "duplication", 0.75).images
    assert len(torch.unique(dup.reshape(60, -1), dim=0)) == 15
    inv = apply_defect(sets, "inversion", 0.25).images
    flipped = ((inv - clean).reshape(60, -1).abs().amax(1) > 0).sum()
    assert int(flipped) == round(0.25 * 60) - int(((clean.reshape(60, -1) == 0).all(1)).sum())
    assert torch.allclose(apply_defect(sets, "shift", 0.1).images, (clean + 0.1).clamp(-1, 1))
    assert float((apply_defect(sets, "blur", 1.5).images - clean).abs().mean()) > 0.01
    # memorisation: that share of the images lie within the faint noise of a FIT image
    mem = apply_defect(sets, "memorisation", 0.5).images.reshape(60, -1)
    fit = sets.fit.images.reshape(len(sets.fit), -1)
    nearest = torch.cdist(mem, fit).min(dim=1).values / mem.shape[1] ** 0.5
    assert int((nearest < 0.02).sum()) == 30
    # mode dropping: the images come from an eighth of the pool's patients, without repeats
    drop = apply_defect(sets, "mode-drop", 0.875)
    assert len(torch.unique(drop.images.reshape(60, -1), dim=0)) == 60
    src = {bytes(x.numpy().tobytes()): patient_of(s) for x, s in zip(sets.pool.images, sets.pool.sources)}
    kept = {src[bytes(x.numpy().tobytes())] for x in drop.images}
    n_pool_patients = len({patient_of(s) for s in sets.pool.sources})
    assert len(kept) <= round(0.125 * n_pool_patients) + 1


def test_detection_counts_lowest_severity() -> None:
    cells = [Cell("a", "noise", 0.1, "ds", "ok", 1.0, None, 0.5, 0.5, False),
             Cell("a", "noise", 0.4, "ds", "ok", 2.0, None, 0.01, 0.02, True),
             Cell("b", "noise", 0.1, "ds", "ok", 2.0, None, 0.01, 0.02, True),
             Cell("b", "noise", 0.4, "ds", "ok", 3.0, None, 0.01, 0.02, True),
             Cell("a", "noise", 0.4, "fid", "unavailable", None, None)]
    det = detection(cells)
    assert det["ds"]["noise"] == {"lowest": {"a": 0.4, "b": 0.1}, "of": 2, "modalities": 2}
    assert det["fid"]["noise"]["of"] == 0


def test_a_small_study_sees_what_the_readme_claims(sets) -> None:
    """Live, at a small size: DS sees strong noise and duplication, FDS sees inversion, each beyond
    the clean (floor) set's interval; DS is blind to memorisation."""
    from genbench.metrics.pipeline import EvalOptions
    from genbench.validity import score_defects

    opts = EvalOptions(metrics=("ds", "fds"), bootstrap=200, device="cpu", fds_seeds=2)
    levels = {"noise": (0.4,), "duplication": (0.97,), "inversion": (1.0,), "memorisation": (1.0,)}
    cells = score_defects(sets, opts, list(levels), levels=levels)
    get = {(c.metric, c.defect): c for c in cells}
    for metric, defect in (("ds", "noise"), ("ds", "duplication"), ("fds", "inversion")):
        c, clean = get[(metric, defect)], get[(metric, "clean")]
        assert c.sees and c.value > clean.ci[1], (metric, defect, c, clean)
    assert not get[("ds", "memorisation")].sees


# --------------------------------------------------------------------------- the committed study

CLAIMS = {
    # (metric, defect): (phantoms where seen at some severity: min, max) over the 4 phantoms
    ("ds", "noise"): (4, 4), ("ds", "blur"): (4, 4), ("ds", "duplication"): (4, 4),
    ("ds", "mode-drop"): (0, 0), ("ds", "memorisation"): (0, 0),
    ("fds", "blur"): (4, 4), ("fds", "shift"): (4, 4), ("fds", "inversion"): (4, 4),
    ("fds", "mode-drop"): (0, 0), ("fds", "noise"): (1, 3),
}


def _committed_cells() -> list[Cell]:
    return [Cell.from_json(r) for r in json.loads((STUDY / "cells.json").read_text())["cells"]]


def _load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("validity_bench", ROOT / "benchmarks" / "validity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_studies_of_disjoint_phantoms_merge_into_one(tmp_path: Path) -> None:
    mod = _load_bench()
    base = {"defects": ["noise"], "n": 10, "size": 16, "bootstrap": 20, "seed": 0, "metrics": ["ds"],
            "date": "2026-12-03"}
    for name, mods, t in (("a", ["chest"], 3.0), ("b", ["heart"], 4.0)):
        cells = [Cell(m, d, sev, "ds", "ok", v, (v - 0.1, v + 0.1), p, p, p is not None and p < 0.05)
                 for m in mods for d, sev, v, p in (("clean", 0.0, 0.5, None), ("noise", 0.1, 1.5, 0.01))]
        mod.write_outputs(tmp_path / name, cells, {**base, "modalities": mods, "elapsed_s": t})
    settings, cells = mod.merge_studies([tmp_path / "a", tmp_path / "b"])
    assert settings["modalities"] == ["chest", "heart"] and settings["elapsed_s"] == 7.0
    assert [c.to_json() for c in cells] == (
        json.loads((tmp_path / "a" / "cells.json").read_text())["cells"]
        + json.loads((tmp_path / "b" / "cells.json").read_text())["cells"])
    seen = detection(cells)["ds"]["noise"]
    assert (seen["modalities"], seen["of"]) == (2, 2)
    # different settings, or the same phantom twice, are refused
    mod.write_outputs(tmp_path / "c", cells[:2], {**base, "n": 11, "modalities": ["chest"], "elapsed_s": 1.0})
    with pytest.raises(SystemExit, match="settings differ.*n"):
        mod.merge_studies([tmp_path / "a", tmp_path / "c"])
    with pytest.raises(SystemExit, match="share phantoms"):
        mod.merge_studies([tmp_path / "a", tmp_path / "a"])


def test_committed_study_backs_the_readme_claims() -> None:
    det = detection(_committed_cells())
    for (metric, defect), (lo, hi) in CLAIMS.items():
        e = det[metric][defect]
        assert e["of"] == 4 and lo <= e["modalities"] <= hi, (metric, defect, e)
    # DS grows with the noise level on every phantom (up to saturation near its maximum)
    cells = _committed_cells()
    for mod in ("chest", "heart", "pelvic", "abdomen"):
        vals = [c.value for c in sorted((c for c in cells if c.metric == "ds" and c.modality == mod
                                         and c.defect in ("clean", "noise")), key=lambda c: c.severity)]
        assert all(b > a - 0.05 for a, b in zip(vals, vals[1:])) and vals[-1] > 3 * vals[0], (mod, vals)


def test_readme_matrix_is_the_committed_matrix() -> None:
    matrix = (STUDY / "matrix.md").read_text()
    rows = [line for line in matrix.splitlines() if line.startswith("| ")]
    readme = (ROOT / "README.md").read_text()
    for row in rows:
        assert row in readme, f"README's validity matrix is out of date: {row}"


def test_committed_matrix_regenerates_from_the_cells(tmp_path: Path) -> None:
    mod = _load_bench()
    settings = json.loads((STUDY / "cells.json").read_text())["settings"]
    mod.write_outputs(tmp_path, _committed_cells(), settings)
    assert (tmp_path / "matrix.md").read_text() == (STUDY / "matrix.md").read_text()
    assert re.search(r"n = \d+ real", (STUDY / "matrix.md").read_text())
    assert np.isfinite([c.value for c in _committed_cells() if c.status == "ok"]).all()


def test_an_existing_study_is_refused_before_any_work_unless_overwrite(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "study"
    out.mkdir()
    (out / "cells.json").write_text("{}")
    script = str(ROOT / "benchmarks" / "validity.py")
    # --merge of a folder that does not exist would fail later; the refusal must come first.
    proc = subprocess.run([sys.executable, script, "--merge", str(tmp_path / "nope"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "already holds a study" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "cells.json").read_text() == "{}"
    mod = _load_bench()
    mod.refuse_existing_study(out, overwrite=True)  # told: goes on
    mod.refuse_existing_study(tmp_path / "empty", overwrite=False)  # nothing there: goes on
