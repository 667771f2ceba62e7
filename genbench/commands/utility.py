"""`genbench utility RUN_DIR`: train classifiers on real, synthetic and mixed data; test on real."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def utility(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/<dataset>/<preset>) made with --utility."),
    models: str | None = typer.Option(None, "--models", "-m", help="Comma list (default: every model with per-class samples)."),
    classifier: str | None = typer.Option(
        None, "--classifier", help="resnet18 | resnet18-narrow | densenet121 | tiny (default: the run preset's)."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Classifier optimiser steps (default: the preset's)."),
    seeds: int = typer.Option(3, "--seeds", help="Classifier seeds per training set."),
    seed: int = typer.Option(0, "--seed", help="First classifier seed."),
    preset: str | None = typer.Option(None, "--preset", help="Classifier budget: quick | paper | test (default: the run's preset)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """The paper's utility test: is each model's synthetic data useful for training a classifier?"""
    from genbench.errors import InputError
    from genbench.utility import UtilityConfig, classifier_config
    from genbench.utility.rundir import utility_for_run

    if not run_dir.is_dir():
        raise InputError("run folder not found", str(run_dir))
    run_preset = preset
    if run_preset is None:
        results_path = run_dir / "results.json"
        run_preset = "quick"
        if results_path.is_file():
            try:
                run_preset = json.loads(results_path.read_text()).get("preset") or "quick"
            except (OSError, json.JSONDecodeError):
                pass
        if run_preset not in ("quick", "paper"):
            run_preset = "quick"
    overrides = {}
    if classifier is not None:
        overrides["arch"] = classifier
    if steps is not None:
        overrides["steps"] = steps
    cfg = UtilityConfig(classifier_config(run_preset, **overrides), seeds=seeds, seed=seed)
    say = (lambda _m: None) if quiet else (lambda m: typer.echo(m, err=True))
    wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
    results = utility_for_run(run_dir, cfg, wanted, say)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    print_utility(results)


def _fmt(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    text = f"{entry['value']:.{digits}f}"
    if entry.get("ci"):
        lo, hi = entry["ci"]
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def print_utility(results: dict) -> None:
    """Rows: real once, then each model's synthetic and mixed; accuracy difference with p-value."""
    from rich.console import Console
    from rich.table import Table as RichTable

    first = next(iter(results.values()))
    c = first["classifier"]
    title = (f"utility: {c['arch']}, {c['steps']} steps, {len(first['seeds'])} seeds; test "
             f"{sum(first['n']['test'].values())} images / {first['n_test_patients']} patients, "
             f"{int(first['ci_level'] * 100)}% CI")
    rt = RichTable(title=title, title_style="bold")
    for col in ("model", "train on", "accuracy", "AUC", "sensitivity", "specificity",
                "Δ accuracy vs real (p)"):
        rt.add_column(col, justify="left" if col in ("model", "train on") else "right")
    real = first["conditions"]["real"]
    rt.add_row("—", "real", *(_fmt(real[m]) for m in ("accuracy", "auc", "sensitivity", "specificity")), "")
    for name, res in results.items():
        for cond in ("synthetic", "mixed"):
            e = res["conditions"][cond]
            d = res["comparisons"][f"{cond} - real"]["accuracy"]
            diff = "n/a" if d["diff"] is None else f"{d['diff']:+.3f} (p={d['p_value']:.3g})"
            rt.add_row(name, cond, *(_fmt(e[m]) for m in ("accuracy", "auc", "sensitivity", "specificity")), diff)
    Console().print(rt)


def register(app: typer.Typer) -> None:
    app.command("utility")(utility)
