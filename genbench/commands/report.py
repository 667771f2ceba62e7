"""`genbench report RUN_DIR`: one self-contained HTML page for a run."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run_dir: Path = typer.Argument(..., help="A run folder runs/<dataset>/<preset> (or its results.json)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output file (default: RUN_DIR/report.html)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
) -> None:
    """Write an HTML report (tables, figures, configs, versions, hashes) that opens offline."""
    from genbench.errors import UsageError
    from genbench.io.atomic import atomic_write_text
    from genbench.report.html import build_html

    page = build_html(run_dir)
    folder = run_dir.parent if run_dir.is_file() else run_dir
    if out is None:
        out = folder / "report.html"  # genbench's own output in its own run folder
    elif out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    atomic_write_text(out, page)
    typer.echo(f"wrote {out} ({len(page) / 1024:.0f} KiB)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
