"""Model-vs-model significance for a benchmark's results (``results.json``).

Every model of one dataset is scored against the same held-out REAL set with the same bootstrap
seed, so replicate i of every model (and of the size-matched floor) used the same resample of
REAL: the models' replicates are *paired*. For each metric, every model is compared with the
best one by ``genbench.stats.compare_to_best`` (two-sided paired bootstrap test, Holm-adjusted
over the models compared with the best); tables mark the best value with ``MARK`` when it beats
the runner-up at alpha = 0.05 after that correction. Each model is also compared with the floor
(``p_vs_floor``: can this model's score be told apart from real images' at this N?).

Pairing needs identical REAL sets, seeds and replicate counts; a model whose metrics.json
disagrees on any of them gets no p-value (NaN, written as null) rather than a wrong one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from genbench.stats import ALPHA, compare_to_best, holm, paired_bootstrap_pvalue

MARK = "†"
LEGEND = (f"{MARK}: the best value is significantly better than the runner-up's (paired bootstrap over "
          f"images, two-sided, Holm-corrected across models, α = {ALPHA})")


def _entry(metrics_json: dict[str, Any] | None, metric: str) -> dict[str, Any] | None:
    e = ((metrics_json or {}).get("metrics") or {}).get(metric)
    if not e or e.get("status") != "ok" or e.get("value") is None or not math.isfinite(e["value"]):
        return None
    return e


def _replicates(entry: dict[str, Any]) -> np.ndarray | None:
    reps = entry.get("bootstrap")
    if not reps:
        return None
    return np.array([np.nan if v is None else float(v) for v in reps])


def _pairing_key(metrics_json: dict[str, Any], entry: dict[str, Any]) -> tuple:
    p = entry.get("params") or {}
    real = (metrics_json.get("real") or {}).get("sha256")
    return (real, p.get("bootstrap_seed"), p.get("bootstrap_replicates"), entry.get("n_real"))


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def comparisons(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """metric -> Comparison JSON (+ ``p_vs_floor``) for one dataset's results."""
    from genbench.metrics.registry import REGISTRY

    models = results.get("models") or {}
    floor = results.get("floor")
    names: list[str] = []
    for e in models.values():
        for m in ((e or {}).get("metrics") or {}).get("metrics") or {}:
            if m not in names:
                names.append(m)
    out: dict[str, dict[str, Any]] = {}
    for metric in names:
        entries: dict[str, tuple[float, np.ndarray | None]] = {}
        keys: dict[str, tuple] = {}
        for model, e in models.items():
            mj = (e or {}).get("metrics") or {}
            entry = _entry(mj, metric)
            if entry is None:
                continue
            entries[model] = (float(entry["value"]), _replicates(entry))
            keys[model] = _pairing_key(mj, entry)
        if not entries:
            continue
        # Only replicates that share REAL, seed and count are paired; the majority key wins.
        common = max(set(keys.values()), key=list(keys.values()).count)
        entries = {m: (v, r if keys[m] == common else None) for m, (v, r) in entries.items()}
        comp = compare_to_best(metric, entries, REGISTRY.direction(metric)).to_json()
        comp["p"] = {k: _none_if_nan(v) for k, v in comp["p"].items()}
        comp["p_holm"] = {k: _none_if_nan(v) for k, v in comp["p_holm"].items()}
        fe = _entry(floor, metric) if floor else None
        if fe is not None and _pairing_key(floor, fe) == common and _replicates(fe) is not None:
            fr = _replicates(fe)
            raw = {m: paired_bootstrap_pvalue(v, r, float(fe["value"]), fr) if r is not None else float("nan")
                   for m, (v, r) in entries.items()}
            adj = dict(zip(raw, holm(list(raw.values()))))
            comp["p_vs_floor"] = {m: _none_if_nan(p) for m, p in raw.items()}
            comp["p_vs_floor_holm"] = {m: _none_if_nan(p) for m, p in adj.items()}
        out[metric] = comp
    return out


def attach(results: dict[str, Any], *, strip_replicates: bool = True) -> dict[str, Any]:
    """Add ``results["comparisons"]`` and (by default) drop the replicates from the embedded
    metrics (each model's own metrics.json keeps them), so results.json stays small."""
    results["comparisons"] = comparisons(results)
    if strip_replicates:
        holders = [(e or {}).get("metrics") for e in (results.get("models") or {}).values()]
        holders.append(results.get("floor"))
        for mj in holders:
            for entry in ((mj or {}).get("metrics") or {}).values():
                if isinstance(entry, dict):
                    entry.pop("bootstrap", None)
    return results


def significant_best(results: dict[str, Any], metric: str) -> str | None:
    """The model marked significantly best on ``metric`` (from ``results["comparisons"]``), or None."""
    comp = (results.get("comparisons") or {}).get(metric)
    if comp and comp.get("significant"):
        return comp.get("best")
    return None
