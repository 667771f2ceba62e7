"""The CI regression gate: metric bounds per dataset and model, read from a TOML file.

File format (``[<dataset>.<model>]`` tables of ``metric = bound``)::

    allow_missing = false        # optional: true lets n/a metrics pass (e.g. no Inception weights)

    [pelvic.ddpm]
    fid = "<= 80"                # explicit comparison: <=, <, >=, >, ==
    ds = 1.5                     # bare number: a bound on the metric's worse side
                                 #   (fid/kid/fds/ds: value <= 1.5; is/precision/recall: value >= x)
    is = [">= 1.2", "<= 5"]      # several bounds, all must hold

    [pelvic."*"]                 # every model that has results for pelvic
    fds = 3.0

    [pelvic.floor]               # the real-vs-real floor row
    ds = 0.5

    ["*".ddpm]                   # ddpm on every dataset in the results
    kid = 0.2
    fds.ci_hi = 3                # a bound on the upper end of the metric's confidence interval
    fds.value = 2.5              #   (TOML: after a dotted fds.* key, the value itself is fds.value)
    "ds.ci_lo" = ">= 0"          # ci_lo: the lower end; a quoted key works the same

A bound whose dataset or model has no results is a violation (a model silently missing from a
run must not pass CI). A metric that is n/a is a violation unless ``allow_missing = true``.
"""

from __future__ import annotations

import math
import operator
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbench.errors import InputError
from genbench.metrics.registry import REGISTRY
from genbench.report.results import Cell, metric_cell

WILDCARD = "*"
FLOOR = "floor"

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}
_BOUND_RE = re.compile(r"^\s*(<=|>=|==|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Bound:
    op: str
    limit: float

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)

    def __str__(self) -> str:
        return f"{self.op} {self.limit:g}"


@dataclass(frozen=True)
class Rule:
    dataset: str
    model: str
    metric: str
    bounds: tuple[Bound, ...]
    field: str = "value"  # or "ci_lo" / "ci_hi": an end of the metric's confidence interval

    @property
    def label(self) -> str:
        return self.metric if self.field == "value" else f"{self.metric}.{self.field}"


FIELDS = ("value", "ci_lo", "ci_hi")


@dataclass
class Thresholds:
    rules: list[Rule]
    allow_missing: bool = False
    path: str = ""


@dataclass(frozen=True)
class Violation:
    dataset: str
    model: str
    metric: str
    message: str

    def __str__(self) -> str:
        return f"{self.dataset}/{self.model}: {self.message}"


@dataclass
class CheckOutcome:
    violations: list[Violation] = field(default_factory=list)
    checked: int = 0  # number of (dataset, model, metric) values compared

    @property
    def passed(self) -> bool:
        return not self.violations


def _parse_bound(raw: Any, metric: str, where: str, path: str) -> list[Bound]:
    if isinstance(raw, bool):
        raise InputError(f"{where}.{metric}: expected a number or a bound like '<= 80'", path)
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            raise InputError(f"{where}.{metric}: the bound must be finite", path)
        op = ">=" if REGISTRY.direction(metric) > 0 else "<="
        return [Bound(op, float(raw))]
    if isinstance(raw, str):
        m = _BOUND_RE.match(raw)
        if not m:
            raise InputError(
                f"{where}.{metric}: cannot read bound {raw!r} (write e.g. '<= 80' or '>= 1.5')",
                path,
            )
        return [Bound(m.group(1), float(m.group(2)))]
    if isinstance(raw, list) and raw:
        out: list[Bound] = []
        for item in raw:
            if isinstance(item, list):
                raise InputError(f"{where}.{metric}: nested lists are not bounds", path)
            out.extend(_parse_bound(item, metric, where, path))
        return out
    raise InputError(f"{where}.{metric}: expected a number or a bound like '<= 80'", path)


def parse_thresholds(doc: dict[str, Any], path: str = "<thresholds>") -> Thresholds:
    rules: list[Rule] = []
    allow_missing = False
    for ds_key, ds_val in doc.items():
        if ds_key == "allow_missing":
            if not isinstance(ds_val, bool):
                raise InputError("allow_missing must be true or false", path)
            allow_missing = ds_val
            continue
        if not isinstance(ds_val, dict):
            raise InputError(
                f"top-level key {ds_key!r} must be a [dataset.model] table, not a value", path
            )
        for model_key, model_val in ds_val.items():
            where = f"[{ds_key}.{model_key}]"
            if not isinstance(model_val, dict):
                raise InputError(
                    f"{ds_key}.{model_key} must be a table of metric bounds "
                    f"(write [{ds_key}.{model_key}] then 'fid = \"<= 80\"')",
                    path,
                )
            for key, raw in model_val.items():
                metric, _, sub = key.partition(".")
                if metric not in REGISTRY:
                    known = ", ".join(REGISTRY.names())
                    raise InputError(f"{where}: unknown metric {metric!r} (known: {known})", path)
                # `fds.ci_hi = 3` is a TOML dotted key: it arrives as {"fds": {"ci_hi": 3}}.
                items = raw.items() if isinstance(raw, dict) and not sub else [(sub or "value", raw)]
                for field_name, bound in items:
                    if field_name not in FIELDS:
                        raise InputError(f"{where}.{metric}.{field_name}: unknown field (use the metric "
                                         f"itself, {metric}.ci_lo or {metric}.ci_hi)", path)
                    bounds = _parse_bound(bound, metric, where, path)
                    rules.append(Rule(ds_key, model_key, metric, tuple(bounds), field_name))
    if not rules:
        raise InputError("no bounds found (expected [dataset.model] tables)", path)
    return Thresholds(rules, allow_missing, path)


def load_thresholds(path: str | Path) -> Thresholds:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError("thresholds file not found", str(p)) from None
    except OSError as exc:
        raise InputError(f"cannot read thresholds file: {exc.strerror}", str(p)) from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed TOML: {exc}", str(p)) from None
    return parse_thresholds(doc, str(p))


def _row(results: dict[str, Any], model: str) -> dict[str, Any] | None:
    if model == FLOOR:
        return results.get("floor")
    entry = results["models"].get(model)
    return None if entry is None else entry.get("metrics")


def _check_cell(cell: Cell, rule: Rule, dataset: str, model: str, allow_missing: bool,
                out: CheckOutcome) -> None:
    if not cell.available:
        if not allow_missing:
            why = f" ({cell.reason})" if cell.reason else ""
            out.violations.append(
                Violation(dataset, model, rule.metric, f"{rule.metric} is n/a{why}")
            )
        return
    assert cell.value is not None
    value = cell.value
    if rule.field != "value":
        if cell.ci is None:
            if not allow_missing:
                out.violations.append(Violation(dataset, model, rule.metric, f"{rule.label}: {rule.metric} "
                                                "has no confidence interval (run with --bootstrap > 0)"))
            return
        value = cell.ci[0] if rule.field == "ci_lo" else cell.ci[1]
    out.checked += 1
    failed = [b for b in rule.bounds if not b.holds(value)]
    if failed:
        better = "higher" if REGISTRY.direction(rule.metric) > 0 else "lower"
        need = " and ".join(str(b) for b in failed)
        out.violations.append(
            Violation(
                dataset,
                model,
                rule.metric,
                f"{rule.label} = {value:.6g} violates {need} ({better} is better)",
            )
        )


def check_results(results: list[dict[str, Any]], thresholds: Thresholds) -> CheckOutcome:
    """Compare every bound with the results; collect every violation, not just the first."""
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_dataset.setdefault(str(r["dataset"]), []).append(r)
    out = CheckOutcome()
    for rule in thresholds.rules:
        datasets = sorted(by_dataset) if rule.dataset == WILDCARD else [rule.dataset]
        if rule.dataset != WILDCARD and rule.dataset not in by_dataset:
            have = ", ".join(sorted(by_dataset)) or "none"
            out.violations.append(
                Violation(rule.dataset, rule.model, rule.metric,
                          f"no results for dataset {rule.dataset!r} (results hold: {have})")
            )
            continue
        for ds in datasets:
            for res in by_dataset[ds]:
                if rule.model == WILDCARD:
                    models = sorted(res["models"])
                else:
                    models = [rule.model]
                for model in models:
                    row = _row(res, model)
                    if row is None:
                        what = "the real-vs-real floor" if model == FLOOR else f"model {model!r}"
                        out.violations.append(
                            Violation(ds, model, rule.metric, f"no results for {what}")
                        )
                        continue
                    cell = metric_cell(row, rule.metric)
                    _check_cell(cell, rule, ds, model, thresholds.allow_missing, out)
    # One line per problem, in a stable order, without repeats from overlapping wildcards.
    seen: set[str] = set()
    unique = []
    for v in out.violations:
        if str(v) not in seen:
            seen.add(str(v))
            unique.append(v)
    out.violations = unique
    return out


def derive_thresholds(results: list[dict[str, Any]], *, margin: float = 0.25,
                      metrics: list[str] | None = None) -> str:
    """A thresholds file from reference results: each available value, loosened by ``margin``
    on its worse side (lower-is-better: value * (1 + margin); higher: value * (1 - margin)).

    Meant for CI: run the reference once, commit the file, and later runs must not regress by
    more than the margin. Metrics that are n/a in the reference get no bound.
    """
    if margin < 0:
        raise InputError(f"margin must be >= 0, got {margin}")
    lines = [
        (f"# genbench check thresholds, derived from reference results with margin {margin:g} "
         "(see genbench/report/check.py for the format)."),
        ("# Bare numbers bound the worse side of each metric: <= for "
         + "/".join(s.name for s in REGISTRY if s.direction < 0) + ", >= for "
         + "/".join(s.name for s in REGISTRY if s.direction > 0) + "."),
    ]
    for r in sorted(results, key=lambda r: str(r["dataset"])):
        rows = [(m, (e or {}).get("metrics")) for m, e in sorted(r["models"].items())]
        if r.get("floor"):
            rows.append((FLOOR, r["floor"]))
        for model, mj in rows:
            bounds = []
            for metric in metrics or list(REGISTRY.names()):
                cell = metric_cell(mj, metric)
                if not cell.available:
                    continue
                assert cell.value is not None
                v = cell.value
                loose = v * (1 + margin) if REGISTRY.direction(metric) < 0 else v * (1 - margin)
                # Keep a bound that a value of 0 could still meet; round outward, not inward.
                digits = 4
                step = 10.0 ** -digits
                loose = (math.ceil(loose / step) if REGISTRY.direction(metric) < 0
                         else math.floor(loose / step)) * step
                bounds.append(f"{metric} = {loose:.{digits}f}  # reference {v:.6g}")
            if bounds:
                lines.append("")
                lines.append(f'["{r["dataset"]}"."{model}"]')
                lines.extend(bounds)
    return "\n".join(lines) + "\n"
