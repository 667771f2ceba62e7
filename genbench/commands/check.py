"""`genbench check RESULTS --thresholds FILE.toml`: the CI gate on metric bounds."""

from __future__ import annotations

from pathlib import Path

import typer


def check(
    results: list[Path] = typer.Argument(
        ..., help="results.json files or run folders (searched recursively)."
    ),
    thresholds: Path = typer.Option(..., "--thresholds", "-t", help="TOML file of bounds."),
    write: bool = typer.Option(
        False, "--write", help="Instead of checking, write THRESHOLDS from these results "
        "(each value loosened by --margin); refuses to overwrite an existing file."),
    margin: float = typer.Option(0.25, "--margin", help="With --write: relative slack per bound."),
    allow_missing: bool = typer.Option(
        False, "--allow-missing", help="Let n/a metrics pass (e.g. run without Inception weights)."
    ),
) -> None:
    """Exit 0 if every bound holds, 1 with the list of violations, 2 for a malformed file."""
    from genbench.report.check import check_results, derive_thresholds, load_thresholds
    from genbench.report.results import find_results

    if write:
        from genbench.errors import UsageError
        from genbench.io.atomic import atomic_write_text

        if thresholds.exists():
            raise UsageError(f"{thresholds} exists; remove it first to write new thresholds")
        atomic_write_text(thresholds, derive_thresholds(find_results(results), margin=margin))
        typer.echo(f"wrote {thresholds}")
        return
    rules = load_thresholds(thresholds)
    if allow_missing:
        rules.allow_missing = True
    outcome = check_results(find_results(results), rules)
    if outcome.passed:
        typer.echo(f"check passed: {outcome.checked} values within {len(rules.rules)} bounds")
        return
    typer.echo(f"check FAILED: {len(outcome.violations)} violation(s) of {thresholds}:", err=True)
    for v in outcome.violations:
        typer.echo(f"  - {v}", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
