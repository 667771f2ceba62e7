"""`genbench run`: train (or load), sample, evaluate and tabulate; resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from genbench.commands.options import (
    FINDING_STRENGTH_OPTION,
    LABEL_FINDING_OPTION,
    LABELS_OPTION,
    with_eval_options,
)


@with_eval_options("run")
def run(
    dataset: str = typer.Option(..., "--dataset", "-d", help="chest | heart | pelvic | abdomen"),
    models: str = typer.Option("all", "--models", "-m", help="'all' or a comma list of generators."),
    preset: str = typer.Option("quick", "--preset", "-p", help="quick (CPU, minutes) | paper (GPU)."),
    data: Path | None = typer.Option(
        None, "--data", help="Real data folder (default: the built-in phantom)."
    ),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Root of the run folders."),
    device: str | None = typer.Option(
        None, "--device", help="cpu, cuda, cuda:N or mps (default: the GPU if there is one)."
    ),
    size: int | None = typer.Option(None, "--size", help="Image size (default: 32 quick, 256 paper)."),
    n_images: int | None = typer.Option(
        None, "--n-images", help="Images to prepare (phantom count / cap on real data)."
    ),
    n_samples: int | None = typer.Option(
        None, "--n-samples", help="Samples per model (default: size of the held-out set)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for data split, training and sampling."),
    force: bool = typer.Option(
        False, "--force", help="Redo every stage, even finished ones (earlier checkpoints are kept)."
    ),
    discard_checkpoints: bool = typer.Option(
        False, "--discard-checkpoints", help="With --force: delete the retrained settings' checkpoints."
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="Override every model's training steps (smoke tests)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Model config override: key=value (every model) or model.key=value (repeatable)."
    ),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Draw the figures."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only notices, errors and the table."),
    utility: bool = typer.Option(
        False, "--utility", help="Per-class generators + the downstream classifier experiment."
    ),
    labels: str | None = LABELS_OPTION,
    label_finding: str | None = LABEL_FINDING_OPTION,
    finding_strength: float | None = FINDING_STRENGTH_OPTION,
    utility_seeds: int = typer.Option(3, "--utility-seeds", help="Classifier seeds per training set."),
    classifier: str | None = typer.Option(
        None, "--classifier", help="resnet18 | resnet18-narrow | densenet121 | tiny (default: the preset's)."
    ),
    classifier_steps: int | None = typer.Option(
        None, "--classifier-steps", help="Classifier optimiser steps (default: the preset's)."
    ),
    *,
    eval_overrides: dict,
) -> None:
    """Benchmark generators on one dataset: train -> sample -> evaluate -> table, resumable."""
    from genbench.metrics.registry import REGISTRY
    from genbench.runner import Reporter, RunConfig, parse_overrides, run_benchmark

    cfg = RunConfig(
        dataset=dataset,
        models=[models],
        preset=preset,
        data_dir=data,
        out=out,
        device=device,
        size=size,
        n_images=n_images,
        n_samples=n_samples,
        seed=seed,
        force=force,
        discard_checkpoints=discard_checkpoints,
        inception_weights=eval_overrides.pop("inception_weights", None),
        steps=steps,
        metrics=REGISTRY.parse(eval_overrides.pop("metrics", None)),
        fds_seeds=eval_overrides.pop("fds_seeds", None),
        eval_options=eval_overrides,
        overrides=parse_overrides(set_),
        figures=figures,
        utility=utility,
        utility_seeds=utility_seeds,
        classifier={k: v for k, v in (("arch", classifier), ("steps", classifier_steps))
                    if v is not None},
        data_options={"labels": labels, "label_finding": label_finding,
                      "finding_strength": finding_strength},
    )
    reporter = Reporter(quiet=quiet)
    results = run_benchmark(cfg, reporter)
    failed = [m for m, e in results["models"].items() if e.get("error")]
    if reporter.main:  # under torchrun only rank 0 prints
        print_summary(results)
        if results.get("utility"):
            from genbench.commands.utility import print_utility

            print_utility({m: e["utility"] for m, e in results["models"].items()
                           if e.get("utility")})
        typer.echo(f"results: {cfg.root / 'results.json'}  table: {cfg.root / 'table.md'}", err=True)
        if failed:
            typer.echo(f"{len(failed)} model(s) failed: {', '.join(failed)}", err=True)
    if failed:
        raise typer.Exit(1)


def print_summary(results: dict) -> None:
    """The terminal summary: models as rows, metrics as columns, best in bold (± std in table.md)."""
    from rich.console import Console
    from rich.table import Table as RichTable

    from genbench.report.tables import shown_blocks, collect, format_value, metric_label, unavailable_note

    table = collect([results])
    blocks = shown_blocks(table)
    col = table.columns[0]
    rt = RichTable(title=f"{results['dataset']} ({results.get('preset')})", title_style="bold",
                   caption="confidence intervals and ± std: table.md", caption_style="dim")
    rows: list[tuple[str, list[str], bool]] = []
    for i, row0 in enumerate(blocks[0].rows if blocks else []):
        texts = []
        for block in blocks:
            row = block.rows[i]
            texts.append(format_value(block.metric, row.cells[col], with_std=False, ci="none"))
        rows.append(("floor" if row0.reference else row0.model, texts, row0.reference))
    # A narrow terminal squeezes columns: names and values keep their width, headers wrap.
    rt.add_column("model", no_wrap=True, min_width=max([5, *(len(r[0]) for r in rows)]))
    for j, block in enumerate(blocks):
        rt.add_column(metric_label(block.metric), justify="right",
                      min_width=max([4, *(len(r[1][j]) for r in rows)]))
    for i, (name, texts, reference) in enumerate(rows):
        cells = [f"[bold green]{t}[/]" if col in block.rows[i].best else t for t, block in zip(texts, blocks)]
        rt.add_row(name, *cells, style="italic dim" if reference else None)
    console = Console()
    console.print(rt)
    note = unavailable_note(table).strip()
    if note:
        console.print(note, style="dim", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
