"""The "Utility" block of the tables and the report: classifiers trained on real, synthetic and
mixed data, tested on held-out real images (``genbench.utility``).

Paper layout: one block per metric (accuracy, AUC, sensitivity, specificity), one row per
training set -- *real* (the reference every model's rows are compared with), then each model's
synthetic and real + synthetic rows -- and one column per dataset; a single dataset turns the
metrics into columns. Cells show value [CI]; a row that differs significantly from real
(paired randomisation test, p < 0.05) is marked with a superscript + (better) or - (worse), and
the Markdown/HTML tables add the accuracy difference with its p-value.
"""

from __future__ import annotations

import csv
import html as _html
import io
import json
from dataclasses import dataclass
from typing import Any

METRICS = ("accuracy", "auc", "sensitivity", "specificity")
CLASSIFIER_TITLES = {"accuracy": "Accuracy", "auc": "AUC", "sensitivity": "Sensitivity",
          "specificity": "Specificity"}
CONDITION_LABELS = {"real": "real", "synthetic": "synthetic", "mixed": "real + synthetic"}
ALPHA = 0.05
REAL_ROW = "real"


@dataclass
class UCell:
    value: float | None = None
    ci: list[float] | None = None
    std: float | None = None
    diff: float | None = None  # vs real
    p_value: float | None = None

    @property
    def available(self) -> bool:
        return self.value is not None

    def mark(self) -> str:
        if self.p_value is None or self.diff is None or self.p_value >= ALPHA:
            return ""
        return "+" if self.diff > 0 else "-"


@dataclass
class URow:
    model: str | None  # None for the real row
    condition: str
    cells: dict[str, dict[str, UCell]]  # column -> metric -> cell

    @property
    def label(self) -> str:
        if self.model is None:
            return REAL_ROW
        return f"{self.model}: {CONDITION_LABELS[self.condition]}"


def has_utility(results: list[dict[str, Any]]) -> bool:
    return any((e or {}).get("utility") for r in results for e in (r.get("models") or {}).values())


def collect_utility(results: list[dict[str, Any]]) -> tuple[list[str], list[URow]]:
    """Columns (datasets) and rows (real, then each model's synthetic and mixed rows)."""
    from genbench.report.results import column_label
    from genbench.report.tables import _model_sort_key

    columns = [column_label(r, results) for r in results]
    models = sorted({m for r in results for m, e in (r.get("models") or {}).items()
                     if (e or {}).get("utility")}, key=_model_sort_key)
    rows = [URow(None, "real", {})]
    for m in models:
        rows += [URow(m, "synthetic", {}), URow(m, "mixed", {})]
    for col, r in zip(columns, results):
        shared = r.get("utility") or {}
        entries = {m: (e or {}).get("utility") for m, e in (r.get("models") or {}).items()}
        real = shared.get("real") or next(
            (u["conditions"]["real"] for u in entries.values() if u), None)
        for row in rows:
            if row.model is None:
                cond, cmp = real, None
            else:
                u = entries.get(row.model) or {}
                cond = (u.get("conditions") or {}).get(row.condition)
                cmp = (u.get("comparisons") or {}).get(f"{row.condition} - real")
            row.cells[col] = {m: _cell((cond or {}).get(m), (cmp or {}).get(m)) for m in METRICS}
    return columns, rows


def _cell(entry: dict | None, cmp: dict | None) -> UCell:
    if not entry or entry.get("value") is None:
        return UCell()
    return UCell(entry["value"], entry.get("ci"), entry.get("std"),
                 (cmp or {}).get("diff"), (cmp or {}).get("p_value"))


def _text(cell: UCell, *, ci: str = "brackets", digits: int = 3) -> str:
    if not cell.available:
        return "n/a"
    text = f"{cell.value:.{digits}f}"
    if cell.ci:
        lo, hi = cell.ci
        text += (f" ± {max(hi - cell.value, cell.value - lo):.{digits}f}" if ci == "pm"
                 else f" [{lo:.{digits}f}, {hi:.{digits}f}]")
    return text


def _diff_text(cell: UCell) -> str:
    if cell.diff is None or cell.p_value is None:
        return ""
    return f"{cell.diff:+.3f} (p = {cell.p_value:.3g})"


def _setup(results: list[dict[str, Any]]) -> str:
    """One sentence on the classifier and the test set (from the first run that has it)."""
    for r in results:
        for e in (r.get("models") or {}).values():
            u = (e or {}).get("utility")
            if u:
                c = u["classifier"]
                test = sum((u.get("n") or {}).get("test", {}).values())
                classes = " vs ".join(u.get("classes") or [])
                return (f"{classes}; classifier {c['arch']} from scratch, {c['steps']} steps, "
                        f"{len(u['seeds'])} seeds; tested on {test} held-out real images "
                        f"({u.get('n_test_patients')} patients); {int(u['ci_level'] * 100)}% CI")
    return ""


LEGEND = (
    "Classifiers trained on the real training images (*real*, the reference), on each model's "
    "synthetic images (same size and class balance) or on both, tested on held-out real images; "
    "value [CI] (bootstrap over held-out patients and classifier seeds); "
    "superscript +/-: significantly better/worse than *real* (paired randomisation test, "
    "p < 0.05, not corrected for multiple comparisons)."
)


def utility_markdown(results: list[dict[str, Any]]) -> str:
    if not has_utility(results):
        return ""
    columns, rows = collect_utility(results)
    esc = _md
    out = ["", "### Utility", "", _setup(results), ""]
    if len(columns) == 1:
        col = columns[0]
        head = ["Training data", *(f"{CLASSIFIER_TITLES[m]} ↑" for m in METRICS), "Δ accuracy vs real (p)"]
        out += ["| " + " | ".join(head) + " |", "|:---|" + "---:|" * (len(head) - 1)]
        for row in rows:
            cells = [f"*{esc(row.label)}*" if row.model is None else esc(row.label)]
            cells += [_with_mark(row.cells[col][m]) for m in METRICS]
            cells.append(_diff_text(row.cells[col]["accuracy"]))
            out.append("| " + " | ".join(cells) + " |")
    else:
        out += ["| Metric | Training data | " + " | ".join(esc(c) for c in columns) + " |",
                "|:---|:---|" + "---:|" * len(columns)]
        for m in METRICS:
            for i, row in enumerate(rows):
                label = f"*{esc(row.label)}*" if row.model is None else esc(row.label)
                cells = [f"{CLASSIFIER_TITLES[m]} ↑" if i == 0 else "", label]
                cells += [_with_mark(row.cells[c][m]) for c in columns]
                out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n\n" + LEGEND + "\n"


def _with_mark(cell: UCell) -> str:
    mark = cell.mark()
    return _text(cell) + (f"<sup>{mark}</sup>" if mark else "")


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def utility_csv_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Rows in the main CSV's schema: metric utility_<m>, model '<model> (<condition>)'."""
    if not has_utility(results):
        return []
    columns, rows = collect_utility(results)
    out = []
    for m in METRICS:
        for row in rows:
            line = [f"utility_{m}", "higher", row.label, "true" if row.model is None else "false"]
            for c in columns:
                cell = row.cells[c][m]
                line.append(repr(cell.value) if cell.available else "")
                line.append(repr(cell.std) if cell.available and cell.std is not None else "")
            out.append(line)
    return out


def append_csv(text: str, results: list[dict[str, Any]]) -> str:
    rows = utility_csv_rows(results)
    if not rows:
        return text
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return text + buf.getvalue()


def utility_json(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not has_utility(results):
        return None
    columns, rows = collect_utility(results)
    return {
        "columns": columns,
        "metrics": list(METRICS),
        "rows": [{"label": r.label, "model": r.model, "condition": r.condition,
                  "cells": {c: {m: vars(r.cells[c][m]) for m in METRICS} for c in columns}}
                 for r in rows],
    }


def append_json(text: str, results: list[dict[str, Any]]) -> str:
    block = utility_json(results)
    if block is None:
        return text
    obj = json.loads(text)
    obj["utility"] = block
    return json.dumps(obj, indent=2) + "\n"


def utility_latex(results: list[dict[str, Any]]) -> str:
    if not has_utility(results):
        return ""
    from genbench.report.tables import latex_escape

    columns, rows = collect_utility(results)
    lines = [r"\begin{table}[t]", r"\centering",
             r"\caption{Utility: " + latex_escape(_setup(results)) + r". Value $\pm$ half-width of "
             r"its confidence interval; $^{+/-}$: significantly better/worse than training on "
             r"real images (paired randomisation test, $p < 0.05$).}",
             r"\begin{tabular}{ll" + "r" * len(columns) + "}", r"\toprule",
             "Metric & Training data & " + " & ".join(latex_escape(c) for c in columns) + r" \\",
             r"\midrule"]
    for k, m in enumerate(METRICS):
        for i, row in enumerate(rows):
            label = latex_escape(row.label)
            label = rf"\textit{{{label}}}" if row.model is None else label
            cells = []
            for c in columns:
                cell = row.cells[c][m]
                text = latex_escape(_text(cell, ci="pm"))
                mark = cell.mark()
                cells.append(text + (rf"$^{{{mark}}}$" if mark else ""))
            lines.append(f"{CLASSIFIER_TITLES[m] if i == 0 else ''} & {label} & " + " & ".join(cells) + r" \\")
        if k < len(METRICS) - 1:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def append_latex(text: str, results: list[dict[str, Any]], standalone: bool) -> str:
    block = utility_latex(results)
    if not block:
        return text
    end = "\\end{document}\n"
    if standalone and text.endswith(end):
        return text[: -len(end)] + block + end
    return text + block


def utility_html(results: dict[str, Any]) -> str:
    """The report page's Utility section for one run ('' when the run has none)."""
    if not has_utility([results]):
        return ""
    esc = _html.escape
    columns, rows = collect_utility([results])
    col = columns[0]
    out = ["<h2>Utility</h2>", f"<p>{esc(_setup([results]))}</p>", "<table><thead><tr>",
           "<th>Training data</th>" + "".join(f"<th>{CLASSIFIER_TITLES[m]} &uarr;</th>" for m in METRICS)
           + "<th>&Delta; accuracy vs real (p)</th></tr></thead><tbody>"]
    for row in rows:
        cls = ' class="ref"' if row.model is None else ""
        cells = "".join(
            f"<td>{esc(_text(row.cells[col][m]))}"
            + (f"<sup>{row.cells[col][m].mark()}</sup>" if row.cells[col][m].mark() else "")
            + "</td>" for m in METRICS)
        out.append(f"<tr{cls}><td>{esc(row.label)}</td>{cells}"
                   f"<td>{esc(_diff_text(row.cells[col]['accuracy']))}</td></tr>")
    out.append("</tbody></table>")
    out.append(f'<p class="muted">{esc(LEGEND.replace("*", ""))}</p>')
    return "\n".join(out)
