"""`genbench turing make|score`: the visual Turing test as a blinded reader study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genbench.errors import InputError, UsageError

turing_app = typer.Typer(
    help="Visual Turing test: make a blinded reader study (one self-contained web page) and "
    "score the readers' answers.",
    no_args_is_help=True,
)

MAKE_HELP = (
    "Make a blinded reader study in --out: index.html (send it to the readers; it holds the "
    "images and nothing that reveals which are real) and key.json (the truth; keep it).\n\n"
    "SOURCES is REAL SYNTH (folders or files of images, as `genbench metrics` reads them) or "
    "one model folder of a `genbench run` (RUN_DIR/MODEL: its samples against the run's "
    "held-out real images)."
)

SCORE_HELP = (
    "Score readers' answers against the study key(s): accuracy, sensitivity (synthetic called "
    "synthetic) and specificity (real called real) per reader and pooled, with exact binomial "
    "CIs, a binomial test against 0.5, Fleiss' kappa and, with confidences, the AUC.\n\n"
    "FILES are key.json files and answers files in any order; answers are matched to their "
    "key by study id. Several keys (e.g. one per modality) give one column each."
)


def _parse_window(text: str | None) -> tuple[float, float] | None | str:
    if text is None:
        return "default"
    if text.strip().lower() == "full":
        return None
    from genbench.errors import parse_range

    return parse_range(text, "--window")


def make_command(
    sources: Annotated[list[Path], typer.Argument(
        help="REAL SYNTH, or RUN_DIR/MODEL of a genbench run.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html and key.json "
                                      "(must not hold a study already).", show_default=False)],
    n: Annotated[int, typer.Option("--n", help="Real images and synthetic images shown (each).")] = 25,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draw, the shuffle and the ids.")] = 0,
    window: Annotated[str | None, typer.Option(
        "--window", help="LO,HI display window in the images' units (HU for the CT presets), or "
        "'full'. Default: soft tissue (-160,240 HU) for pelvic/abdomen CT, the full range "
        "otherwise.")] = None,
    readers: Annotated[str | None, typer.Option(
        "--readers", help="Comma-separated reader names offered on the page (default: a free "
        "text field).")] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Preset the images belong to (chest, heart, pelvic, abdomen): sets the "
        "units of --window, its default and the title. Automatic for a run folder.")] = None,
    title: Annotated[str | None, typer.Option(
        "--title", help="Study title shown on the page and used as its table column "
        "(default: the dataset, else the --out folder's name).")] = None,
    size: Annotated[int | None, typer.Option(
        "--size", help="Resize real and synthetic images to N x N (needed when they differ).")] = None,
    hu_window: Annotated[str | None, typer.Option(
        "--hu-window", help="LO,HI: CT window in HU mapped to [-1, 1] when reading DICOM/NIfTI.")] = None,
    value_range: Annotated[str | None, typer.Option(
        "--value-range", help="LO,HI: raw range mapped to [-1, 1] for arrays without one.")] = None,
) -> None:
    from genbench.data.presets import get_preset
    from genbench.errors import parse_range
    from genbench.io import read_image_folder
    from genbench.turing.study import DEFAULT_WINDOWS, StudyOptions, load_run_sets, make_study

    win = _parse_window(window)
    names = [r for r in (readers or "").split(",") if r.strip()]
    if len(sources) == 1:
        if size is not None or hu_window is not None or value_range is not None:
            raise UsageError("--size, --hu-window and --value-range apply to REAL SYNTH folders, "
                             "not to a run folder")
        real, synth, prov = load_run_sets(sources[0])
        run_dataset = prov["dataset"]
        if dataset is not None and dataset != run_dataset:
            raise UsageError(f"--dataset {dataset} but the run is on {run_dataset}")
        dataset = run_dataset
        mapping = real.mapping
    elif len(sources) == 2:
        hu, vr = parse_range(hu_window, "--hu-window"), parse_range(value_range, "--value-range")
        if size is not None and size < 8:
            raise UsageError(f"--size must be >= 8 pixels, got {size}")
        real, synth = (read_image_folder(p, resize=size, hu_window=hu, value_range=vr)
                       for p in sources)
        prov = {"real": str(sources[0]), "synth": str(sources[1])}
        mapping = get_preset(dataset).mapping if dataset is not None else real.mapping
        if dataset is not None:
            prov["dataset"] = dataset
    else:
        raise UsageError(f"give REAL SYNTH or one RUN_DIR/MODEL, got {len(sources)} paths")
    if dataset is not None:
        get_preset(dataset)  # validates the name
    chosen = DEFAULT_WINDOWS.get(dataset or "") if win == "default" else win
    options = StudyOptions(n=n, seed=seed, window=chosen, readers=names,
                           title=title or dataset or out.resolve().name)
    key = make_study(real, synth, out, options, mapping=mapping, provenance=prov)
    w = key["display"]["window"]
    shown = "full range" if w is None else f"window {w[0]:g}..{w[1]:g} {key['display']['unit']}"
    typer.echo(f"study {key['study_id']}: {n} real + {n} synthetic images ({shown})")
    typer.echo(f"wrote {out / 'index.html'} (send it to the readers)")
    typer.echo(f"wrote {out / 'key.json'} (keep it; score with: genbench turing score "
               f"{out / 'key.json'} ANSWERS.json...)")


def score_command(
    files: Annotated[list[Path], typer.Argument(
        help="key.json file(s) and the readers' answers files.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="md | latex | csv | json")] = "md",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the table here instead "
                                             "of printing it.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the full report "
                                                  "as JSON.")] = None,
    allow_incomplete: Annotated[bool, typer.Option(
        "--allow-incomplete", help="Score readers who left items out (listed in the output) "
        "instead of stopping.")] = False,
    level: Annotated[float, typer.Option("--level", help="Confidence level of the intervals.")] = 0.95,
    digits: Annotated[int, typer.Option("--digits", help="Decimals in md/latex tables.")] = 2,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing --out/--json files.")
                     ] = False,
) -> None:
    from genbench.io.atomic import atomic_write_json, atomic_write_text
    from genbench.turing.score import render, score_files, to_json

    if fmt not in ("md", "latex", "csv", "json"):
        raise UsageError(f"--format must be md, latex, csv or json, got {fmt!r}")
    for target in (out, json_out):
        if target is not None and target.exists() and not force:
            raise InputError("exists; pass --force to overwrite it", str(target))
    studies = score_files(files, level=level, allow_incomplete=allow_incomplete)
    text = render(studies, fmt, digits=digits)
    if json_out is not None:
        atomic_write_json(json_out, to_json(studies))
        typer.echo(f"wrote {json_out}", err=True)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}", err=True)


def register(app: typer.Typer) -> None:
    turing_app.command("make", help=MAKE_HELP, no_args_is_help=True)(make_command)
    turing_app.command("score", help=SCORE_HELP, no_args_is_help=True)(score_command)
    app.add_typer(turing_app, name="turing")
