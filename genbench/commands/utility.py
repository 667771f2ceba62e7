"""`genbench utility RUN_DIR`: train classifiers on real, synthetic and mixed data; test on real."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def utility(
    run_dir: Path = typer.Argument(..., help="A run folder (runs/<dataset>/<preset>) made with --utility."),
    models: str | None = typer.Option(None, "--models", "-m", help="Comma list (default: every model with per-class samples)."),
    classifier: str | None = typer.Option(
        None, "--classifier", help="resnet18 | resnet18-narrow | densenet121 | tiny (default: the run's)."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Classifier optimiser steps (default: the run's)."),
    seeds: int | None = typer.Option(None, "--seeds", help="Classifier seeds per training set (default: the run's, else 3)."),
    seed: int | None = typer.Option(None, "--seed", help="First classifier seed (default: the run's seed)."),
    preset: str | None = typer.Option(
        None, "--preset", help="Classifier budget quick | paper | test (default: the run's settings, else its preset's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """The paper's utility test: is each model's synthetic data useful for training a classifier?

    Without options it repeats the run's own settings (recorded in results.json), so its cached
    classifier predictions are reused and nothing is retrained."""
    from genbench.errors import InputError
    from genbench.utility import ClassifierConfig, UtilityConfig, classifier_config
    from genbench.utility.rundir import utility_for_run

    if not run_dir.is_dir():
        raise InputError("run folder not found", str(run_dir))
    recorded: dict = {}
    run_preset, run_seed = "quick", 0
    results_path = run_dir / "results.json"
    if results_path.is_file():
        try:
            obj = json.loads(results_path.read_text())
        except (OSError, json.JSONDecodeError):
            obj = {}
        recorded = obj.get("utility") or {}
        run_preset = obj.get("preset") if obj.get("preset") in ("quick", "paper") else "quick"
        run_seed = int((obj.get("settings") or {}).get("seed") or 0)
    overrides = {k: v for k, v in (("arch", classifier), ("steps", steps)) if v is not None}
    if preset is None and recorded.get("classifier"):
        base = ClassifierConfig.from_dict(recorded["classifier"])
        clf = ClassifierConfig.from_dict({**base.as_dict(), **overrides})
    else:
        clf = classifier_config(preset or run_preset, **overrides)
    n_seeds = seeds if seeds is not None else len(recorded.get("seeds") or []) or 3
    first = seed if seed is not None else (recorded.get("seeds") or [run_seed])[0]
    cfg = UtilityConfig(clf, seeds=n_seeds, seed=first)
    say = (lambda _m: None) if quiet else (lambda m: typer.echo(m, err=True))
    wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
    results = utility_for_run(run_dir, cfg, wanted, say)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    print_utility(results)


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    text = f"{entry['value']:.3f}"
    if entry.get("ci"):
        lo, hi = entry["ci"]
        text += f" [{lo:.2f}, {hi:.2f}]"  # the terminal is narrow: table.md has 3 decimals
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
