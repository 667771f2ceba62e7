"""Comparison tables in the paper's layout: one block per metric, rows = models, columns = datasets.

The best model per column and metric is marked (bold in Markdown and LaTeX), in the metric's
own direction (from the metric registry, ``genbench.metrics.registry``). The real-vs-real floor is a reference
row at the bottom of each block: it shows what "indistinguishable" scores at this sample size
and never competes for bold.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from genbench.errors import UsageError
from genbench.metrics.registry import REGISTRY
from genbench.report.results import FLOOR_ROW, Cell, column_label, metric_cell

FORMATS = ("csv", "md", "latex", "json")

# The paper's model order; models it does not know follow alphabetically.
MODEL_ORDER = ("wgan-gp", "pggan", "stylegan", "ddpm", "mt-ddpm")

NA = "n/a"


@dataclass
class Row:
    model: str
    reference: bool  # the floor row: shown, never bold
    cells: dict[str, Cell]  # column label -> cell
    best: set[str] = field(default_factory=set)  # columns where this row is best
    significant: set[str] = field(default_factory=set)  # best and significantly better than the runner-up


@dataclass
class Block:
    metric: str
    rows: list[Row]

    @property
    def direction(self) -> int:
        return REGISTRY.direction(self.metric)

    @property
    def available(self) -> bool:
        return any(c.available for row in self.rows for c in row.cells.values())

    def unavailable_reason(self) -> str:
        """The one reason shared by the block's cells (the first, when they differ)."""
        for row in self.rows:
            for c in row.cells.values():
                if c.reason:
                    return _first_sentence(c.reason)
        return "not computed"


@dataclass
class Table:
    columns: list[str]
    blocks: list[Block]
    floor_notes: dict[str, str] = field(default_factory=dict)  # columns whose floor is not size-matched


def _model_sort_key(name: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(name), "") if name in MODEL_ORDER else (len(MODEL_ORDER), name)


def format_value(metric: str, cell: Cell, *, with_std: bool = True, pm: str = " ± ",
                 ci: str = "brackets") -> str:
    """``value [lo, hi]`` when the cell has a CI (``ci="pm"``: ``value ± half-width``, for LaTeX;
    ``ci="none"``: no interval), else ``value ± std`` where the metric defines a std."""
    if not cell.available:
        return NA
    d = decimals(metric)
    text = f"{cell.value:.{d}f}"
    if cell.ci is not None and ci != "none":
        lo, hi = cell.ci
        if ci == "pm":
            return text + f"{pm}{(hi - lo) / 2:.{d}f}"
        return text + f" [{lo:.{d}f}, {hi:.{d}f}]"
    if with_std and cell.std is not None and math.isfinite(cell.std):
        text += f"{pm}{cell.std:.{d}f}"
    return text


def _cell_text(block: Block, row: Row, col: str, **kw: Any) -> str:
    from genbench.report.significance import MARK

    text = format_value(block.metric, row.cells[col], **kw)
    return text + MARK if col in row.significant else text


def collect(results: list[dict[str, Any]], metrics: list[str] | None = None) -> Table:
    """Arrange results (one per dataset) into metric blocks and mark the best cells."""
    if not results:
        raise UsageError("no results to tabulate")
    columns = [column_label(r, results) for r in results]
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise UsageError(f"two results files share the column {dupes[0]!r}; pass each run once")
    models = sorted({m for r in results for m in r["models"]}, key=_model_sort_key)

    if metrics is None:
        present: set[str] = set()
        for r in results:
            asked = (r.get("settings") or {}).get("metrics")
            if asked:
                present.update(asked)
                continue
            rows = [(e or {}).get("metrics") for e in r["models"].values()] + [r.get("floor")]
            for mj in rows:
                for name, entry in ((mj or {}).get("metrics") or {}).items():
                    if not str((entry or {}).get("reason") or "").startswith("not requested"):
                        present.add(name)
        metrics = [m for m in REGISTRY.names() if m in present]
        metrics += sorted(present - set(REGISTRY.names()))
    else:
        metrics = list(REGISTRY.parse(metrics))

    blocks: list[Block] = []
    for metric in metrics:
        rows: list[Row] = []
        for model in models:
            cells = {}
            for col, r in zip(columns, results):
                entry = r["models"].get(model)
                cells[col] = metric_cell((entry or {}).get("metrics"), metric)
            rows.append(Row(model, False, cells))
        if any(r.get("floor") for r in results):
            cells = {col: metric_cell(r.get("floor"), metric) for col, r in zip(columns, results)}
            rows.append(Row(FLOOR_ROW, True, cells))
        block = Block(metric, rows)
        _mark_best(block, columns)
        _mark_significant(block, columns, results)
        blocks.append(block)
    notes = {}
    for col, r in zip(columns, results):
        info = (r.get("floor") or {}).get("floor_info")
        if info and not info.get("size_matched"):
            notes[col] = str(info.get("note") or info.get("method"))
    return Table(columns, blocks, notes)


def _mark_best(block: Block, columns: list[str]) -> None:
    d = decimals(block.metric)
    for col in columns:
        # Compare what the reader sees: values equal at the shown precision tie for bold.
        shown = {
            i: round(row.cells[col].value, d)  # type: ignore[arg-type]
            for i, row in enumerate(block.rows)
            if not row.reference and row.cells[col].available
        }
        if not shown:
            continue
        target = max(shown.values()) if block.direction > 0 else min(shown.values())
        for i, v in shown.items():
            if v == target:
                block.rows[i].best.add(col)


def _mark_significant(block: Block, columns: list[str], results: list[dict[str, Any]]) -> None:
    from genbench.report.significance import comparisons, significant_best

    for col, r in zip(columns, results):
        if "comparisons" not in r:  # results written before significance tests: compute them
            r["comparisons"] = comparisons(r)
        best = significant_best(r, block.metric)
        for row in block.rows:
            if not row.reference and row.model == best and col in row.best:
                row.significant.add(col)


def metric_label(metric: str, arrow: str | None = None) -> str:
    up, down = ("↑", "↓") if arrow is None else arrow.split("|")
    spec = REGISTRY.get(metric)
    label = spec.title if spec else metric
    return f"{label} {up if REGISTRY.direction(metric) > 0 else down}"


def decimals(metric: str) -> int:
    spec = REGISTRY.get(metric)
    return spec.digits if spec else 3


def without_home(text: str) -> str:
    """``text`` with this machine's home folder written ``~``: tables and studies get committed
    and shared, and the home folder of the machine that made them is noise."""
    import os

    return text.replace(os.path.expanduser("~"), "~")


def _first_sentence(reason: str) -> str:
    text = without_home(" ".join(str(reason).split()))
    cut = text.find(". ")
    return text if cut < 0 else text[: cut + 1]


def unavailable_note(table: Table) -> str:
    """One line per shared reason for the metrics that have no value anywhere in the table."""
    groups: dict[str, list[str]] = {}
    for block in table.blocks:
        if not block.available:
            groups.setdefault(block.unavailable_reason(), []).append(metric_label(block.metric))
    return "".join(f"\nNot available ({', '.join(names)}): {reason}\n" for reason, names in groups.items())


# --------------------------------------------------------------------------- renderers


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["metric", "better", "model", "reference"]
    for col in table.columns:
        header += [col, f"{col}_std"]
    w.writerow(header)
    for block in table.blocks:
        for row in block.rows:
            line: list[Any] = [
                block.metric,
                "higher" if block.direction > 0 else "lower",
                row.model,
                "true" if row.reference else "false",
            ]
            for col in table.columns:
                c = row.cells[col]
                line.append(repr(c.value) if c.available else "")
                line.append(repr(c.std) if c.available and c.std is not None else "")
            w.writerow(line)
    return buf.getvalue()


def to_json(table: Table) -> str:
    blocks = []
    for block in table.blocks:
        rows = []
        for row in block.rows:
            rows.append(
                {
                    "model": row.model,
                    "reference": row.reference,
                    "cells": {
                        col: {
                            "value": row.cells[col].value if row.cells[col].available else None,
                            "std": row.cells[col].std if row.cells[col].available else None,
                            "status": row.cells[col].status,
                            "best": col in row.best,
                        }
                        for col in table.columns
                    },
                }
            )
        blocks.append(
            {
                "metric": block.metric,
                "better": "higher" if block.direction > 0 else "lower",
                "rows": rows,
            }
        )
    return json.dumps({"columns": table.columns, "blocks": blocks}, indent=2) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def shown_blocks(table: Table) -> list[Block]:
    """The blocks a reader's table shows: metrics with at least one value (the rest get one note line)."""
    return [b for b in table.blocks if b.available]


def _legend(table: Table | None = None) -> str:
    from genbench.report.significance import LEGEND

    ci = table is not None and any(c.ci for b in table.blocks for r in b.rows for c in r.cells.values())
    values = ("values are value [CI low, CI high] (bootstrap over images; t-SNE seeds for FDS)"
              if ci else "values are mean ± std where the metric defines one")
    return ("Best value per column in **bold** (↑ higher is better, ↓ lower is better); "
            f"{values}; {LEGEND}; "
            f"*{FLOOR_ROW}* scores held-out real images against other real images (a "
            "reference, not a competitor); n/a = not computed or unavailable." + _floor_note(table))


def _floor_note(table: Table | None) -> str:
    notes = (table.floor_notes if table is not None else {}) or {}
    return "".join(f" Floor ({col}): {note}." for col, note in notes.items())


def to_markdown(table: Table) -> str:
    """The paper's layout (metric blocks × datasets); one dataset: models × metrics."""
    blocks = shown_blocks(table)
    if len(table.columns) == 1 and blocks:
        return _markdown_single(table, blocks)
    head = ["Metric", "Model", *(_md_escape(c) for c in table.columns)]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":---", ":---"] + ["---:"] * len(table.columns)) + "|",
    ]
    for block in blocks:
        for i, row in enumerate(block.rows):
            name = _md_escape(row.model)
            cells = [metric_label(block.metric) if i == 0 else "", f"*{name}*" if row.reference else name]
            for col in table.columns:
                text = _cell_text(block, row, col)
                cells.append(f"**{text}**" if col in row.best else text)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _legend(table) + "\n" + unavailable_note(table)


def _markdown_single(table: Table, blocks: list[Block]) -> str:
    col = table.columns[0]
    head = ["Model", *(metric_label(b.metric) for b in blocks)]
    lines = [f"**{_md_escape(col)}**", "",
             "| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * len(blocks)) + "|"]
    for i, row in enumerate(blocks[0].rows):
        name = _md_escape(row.model)
        cells = [f"*{name}*" if row.reference else name]
        for block in blocks:
            r = block.rows[i]
            text = _cell_text(block, r, col)
            cells.append(f"**{text}**" if col in r.best else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _legend(table) + "\n" + unavailable_note(table)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters; non-ASCII arrows/± are spelled as math commands."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return (out.replace("±", r"$\pm$").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
            .replace("†", r"$^\dagger$"))


def to_latex(table: Table, *, standalone: bool = False, caption: str | None = None) -> str:
    import pandas as pd

    index: list[tuple[str, str]] = []
    data: list[list[str]] = []
    style: list[list[str]] = []
    for block in shown_blocks(table) or table.blocks:
        label = latex_escape(metric_label(block.metric))
        for row in block.rows:
            name = latex_escape(row.model)
            index.append((label, rf"\textit{{{name}}}" if row.reference else name))
            data.append(
                [latex_escape(_cell_text(block, row, c, ci="pm")) for c in table.columns]
            )
            style.append(["textbf: --rwrap;" if c in row.best else "" for c in table.columns])
    columns = [latex_escape(c) for c in table.columns]
    df = pd.DataFrame(data, index=pd.MultiIndex.from_tuples(index), columns=columns)
    css = pd.DataFrame(style, index=df.index, columns=df.columns)
    styler = df.style.apply(lambda _: css, axis=None)
    if caption is None:
        ci = any(c.ci for b in table.blocks for r in b.rows for c in r.cells.values())
        caption = (
            "Comparison of generators. Best value per column in bold "
            r"($\uparrow$ higher is better, $\downarrow$ lower is better); "
            + (r"value $\pm$ half-width of its confidence interval (bootstrap over images); "
               if ci else r"mean $\pm$ std where defined; ")
            + r"$\dagger$: significantly better than the runner-up (paired bootstrap, Holm, "
            r"$\alpha = 0.05$); the real-vs-real floor is a reference, not a competitor."
        )
    body = styler.to_latex(
        hrules=True,
        multirow_align="naive",
        clines="skip-last;data",
        column_format="ll" + "r" * len(columns),
        caption=caption,
        position="t",
        position_float="centering",
    )
    body = _booktabs_rules(body, n_cols=2 + len(columns))
    if not standalone:
        return body
    return (
        "% genbench comparison table. To use it in a paper, copy the table environment;\n"
        "% it needs \\usepackage{booktabs}.\n"
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1in]{geometry}\n"
        "\\begin{document}\n" + body + "\\end{document}\n"
    )


def _booktabs_rules(body: str, n_cols: int) -> str:
    # Styler separates index groups with \cline; booktabs wants \midrule between blocks and
    # nothing right before \bottomrule. The first header row gets the index names.
    lines = body.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if line.strip() == rf"\cline{{1-{n_cols}}}":
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if nxt != r"\bottomrule":
                out.append(r"\midrule")
            continue
        out.append(line)
    text = "\n".join(out) + "\n"
    return text.replace("\\toprule\n &  & ", "\\toprule\nMetric & Model & ", 1)


def build_table(
    results: list[dict[str, Any]],
    fmt: str,
    *,
    metrics: list[str] | None = None,
    standalone: bool = False,
) -> str:
    """Render results (one per dataset) as ``csv``, ``md``, ``latex`` or ``json`` text."""
    fmt = {"markdown": "md", "tex": "latex"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise UsageError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    from genbench.report import utility as ut  # the Utility block, when the results have one

    table = collect(results, metrics)
    if fmt == "csv":
        return ut.append_csv(to_csv(table), results)
    if fmt == "json":
        return ut.append_json(to_json(table), results)
    if fmt == "md":
        return to_markdown(table) + ut.utility_markdown(results)
    return ut.append_latex(to_latex(table, standalone=standalone), results, standalone)


def write_run_tables(folder: Any, results: dict[str, Any]) -> None:
    """A run folder's ``table.csv``, ``table.md`` and ``table.tex`` (standalone) from its results."""
    from pathlib import Path

    from genbench.io.atomic import atomic_write_text

    folder = Path(folder)
    atomic_write_text(folder / "table.csv", build_table([results], "csv"))
    atomic_write_text(folder / "table.md", build_table([results], "md"))
    atomic_write_text(folder / "table.tex", build_table([results], "latex", standalone=True))
