"""Reading benchmark results back: ``results.json`` files, run folders, and the cells of a table.

A ``results.json`` (written by ``genbench run`` at ``runs/<dataset>/<preset>/``) has this shape::

    {"schema": "genbench.results/1", "genbench_version": ..., "dataset": "pelvic",
     "preset": "quick", "data": {...}, "settings": {...}, "versions": {...},
     "models": {"ddpm": {"metrics": <metrics.json>, "config": {...}, ...}, ...},
     "floor": <metrics.json of the real-vs-real floor> | null}

where ``<metrics.json>`` is the ``genbench metrics --json`` schema:
``{"metrics": {"fid": {"value", "std", "status", "reason", ...}, ...}, ...}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench.errors import InputError

RESULTS_SCHEMA = "genbench.results/1"
FLOOR_ROW = "real-vs-real (floor)"


@dataclass(frozen=True)
class Cell:
    """One metric value of one model on one dataset, as a table shows it."""

    value: float | None
    std: float | None = None
    status: str = "ok"
    reason: str | None = None
    ci: tuple[float, float] | None = None  # confidence interval (level in the run's settings)

    @property
    def available(self) -> bool:
        return self.status == "ok" and self.value is not None and math.isfinite(self.value)


def read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON (line {exc.lineno}: {exc.msg})", str(path)) from None
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object at the top level", str(path))
    return obj


def load_results(path: str | Path) -> dict[str, Any]:
    """Load one ``results.json`` (or the run folder holding it) and check its shape."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    obj = read_json(p)
    for key in ("dataset", "models"):
        if key not in obj:
            raise InputError(f"not a genbench results file (no {key!r} key)", str(p))
    if not isinstance(obj["models"], dict):
        raise InputError("'models' must be an object keyed by model name", str(p))
    obj.setdefault("preset", None)
    obj.setdefault("floor", None)
    obj["_path"] = str(p)
    return obj


def find_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Results for each argument: a results.json, a run folder, or a folder searched recursively."""
    out: list[dict[str, Any]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file() or (p / "results.json").is_file():
            out.append(load_results(p))
        elif p.is_dir():
            found = sorted(p.rglob("results.json"))
            if not found:
                raise InputError("no results.json in this folder or below it", str(p))
            out.extend(load_results(f) for f in found)
        else:
            raise InputError("no such file or folder", str(p))
    return out


def metric_cell(metrics_json: dict[str, Any] | None, metric: str) -> Cell:
    """The cell for ``metric`` from a metrics.json object (``None`` or missing -> unavailable)."""
    if not metrics_json:
        return Cell(None, status="missing", reason="no metrics")
    entry = (metrics_json.get("metrics") or {}).get(metric)
    if entry is None:
        return Cell(None, status="missing", reason=f"{metric} was not computed")
    value = entry.get("value")
    std = entry.get("std")
    ci = entry.get("ci")
    return Cell(
        value=None if value is None else float(value),
        std=None if std is None else float(std),
        status=str(entry.get("status", "ok")),
        reason=entry.get("reason"),
        ci=None if not ci or None in ci else (float(ci[0]), float(ci[1])),
    )


def column_label(results: dict[str, Any], all_results: list[dict[str, Any]]) -> str:
    """A dataset's column name, made only as specific as needed: the dataset, then its preset,
    then the root folder of its run (``<root>/<dataset>/<preset>/results.json``)."""

    def root_of(r: dict[str, Any]) -> str:
        parents = Path(str(r.get("_path", ""))).parents
        return parents[2].name if len(parents) > 2 else str(r.get("_path", "?"))

    name = str(results["dataset"])
    same = [r for r in all_results if r["dataset"] == results["dataset"]]
    if len(same) == 1:
        return name
    if len({r.get("preset") for r in same}) == len(same):
        return f"{name} ({results.get('preset')})"
    return f"{name} ({results.get('preset')}, {root_of(results)})"
