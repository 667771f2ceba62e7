"""`genbench table RUN_DIRS...`: the comparison table of one or more runs (one column per dataset)."""

from __future__ import annotations

from pathlib import Path

import typer


def table(
    run_dirs: list[Path] = typer.Argument(
        ..., help="Run folders (runs/<dataset>/<preset>), results.json files, or folders to search."
    ),
    fmt: str = typer.Option("md", "--format", "-f", help="csv | md | latex | json"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    metrics: str | None = typer.Option(
        None, "--metrics", help="Comma list of metrics to show (default: all present)."
    ),
    standalone: bool = typer.Option(
        False, "--standalone", help="LaTeX: a complete document that compiles as-is."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
) -> None:
    """Print the paper-style comparison table: one block per metric, rows = models, columns = datasets."""
    from genbench.errors import UsageError
    from genbench.io.atomic import atomic_write_text
    from genbench.report.results import find_results
    from genbench.report.tables import build_table

    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    text = build_table(find_results(run_dirs), fmt, metrics=wanted, standalone=standalone)
    if out is None:
        typer.echo(text, nl=False)
        return
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    atomic_write_text(out, text)
    typer.echo(f"wrote {out}", err=True)


def register(app: typer.Typer) -> None:
    app.command("table")(table)
