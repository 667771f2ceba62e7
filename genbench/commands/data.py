"""`genbench data show|prepare|preview PRESET`: inspect presets, prepare data sets, look at them."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from genbench.commands.options import FINDING_STRENGTH_OPTION, LABEL_FINDING_OPTION, LABELS_OPTION
from genbench.errors import UsageError

data_app = typer.Typer(
    help="Dataset presets: show the preprocessing, prepare, preview.", no_args_is_help=True
)

PRESET_HELP = "Dataset preset: chest, heart, pelvic or abdomen."
DATA_HELP = "Folder with the real data set; without it, the built-in phantom is used."


def _options(frames: str | None) -> dict:
    return {"frames": frames} if frames is not None else {}


@data_app.command("show")
def show(
    preset: str = typer.Argument(..., help=PRESET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the spec as JSON."),
) -> None:
    """Print a preset's declarative spec (spacing, canvas, intensity mapping, slice selection)."""
    from genbench.data import get_preset

    p = get_preset(preset)
    if as_json:
        typer.echo(json.dumps(p.as_dict(), indent=2))
        return
    it = p.intensity
    spacing = (
        "none (x-rays carry no trustworthy spacing)"
        if p.spacing is None
        else " x ".join("keep" if s is None else f"{s:g}" for s in p.spacing)
        + " mm (slice x row x col)"
    )
    kind = {
        "window": f"clip [{it.lo:g}, {it.hi:g}] {it.unit}, map to [-1, 1]",
        "minmax": "per-scan min-max to [0, 1], then [-1, 1]",
        "fixed": f"[{it.lo:g}, {it.hi:g}] {it.unit} -> [-1, 1]",
    }[it.kind]
    lines = [
        f"{p.name}: {p.modality}, {p.dataset}",
        f"  source format   {p.source_format}",
        f"  layout          {p.layout}",
        f"  spacing         {spacing}",
        f"  canvas          pad/crop to {p.canvas}x{p.canvas} (padding = {it.background:g} {it.unit}), "
        "then resize to --size",
        f"  intensity       {kind}",
        f"  selection       {p.slice_selection}",
        f"  phantom         {p.phantom_n} slices by default (20% of synthetic patients held out)",
    ]
    from genbench.data.presets import CLASS_LABELS

    if p.name in CLASS_LABELS:
        lines.append(f"  class labels    {CLASS_LABELS[p.name]}")
    if p.notes:
        lines.append(f"  notes           {p.notes}")
    typer.echo("\n".join(lines))


@data_app.command("prepare")
def prepare(
    preset: str = typer.Argument(..., help=PRESET_HELP),
    data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
    size: int = typer.Option(64, "--size", help="Output resolution in pixels (the paper: 256)."),
    n: int | None = typer.Option(None, "--n", help="Number of slices (phantom default: 600)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the phantom and of the patient split."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of patients held out."),
    frames: str | None = typer.Option(
        None, "--frames", help="heart: ed_es (default), all, or 0,5,10."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Cache folder (default ~/.cache/genbench)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Also write train/test as an .npz here."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    labels: str | None = LABELS_OPTION,
    label_finding: str | None = LABEL_FINDING_OPTION,
    finding_strength: float | None = FINDING_STRENGTH_OPTION,
) -> None:
    """Prepare a preset (phantom or --data) and report what was used."""
    from genbench.data import prepare_dataset

    if out is not None and out.exists():
        raise UsageError(f"{out} exists; choose another --out (genbench never overwrites files)")
    ds = prepare_dataset(
        preset,
        data_dir=data,
        size=size,
        n=n,
        seed=seed,
        test_fraction=test_fraction,
        cache_dir=cache_dir,
        options=_options(frames)
        | {k: v for k, v in (("labels", labels), ("label_finding", label_finding),
                             ("finding_strength", finding_strength)) if v is not None},
    )
    if out is not None:
        from genbench.data.cache import write_entry

        arrays = {"train": ds.train.images[:, 0].numpy(), "test": ds.test.images[:, 0].numpy()}
        write_entry(out.parent, out.name.removesuffix(".npz"), arrays, ds.summary())
    if as_json:
        typer.echo(json.dumps(ds.summary(), indent=2))
        return
    cached = " (from cache)" if ds.from_cache else ""
    typer.echo(f"{ds.description}{cached}")
    typer.echo(
        f"  train {len(ds.train)} slices / {len(ds.split['train_patients'])} patients, "
        f"test {len(ds.test)} slices / {len(ds.split['test_patients'])} patients (seed {seed})"
    )
    for name, c in ds.class_counts().items():
        typer.echo(f"  class {name}: {c['train']} train / {c['test']} held-out")
    typer.echo(f"  fingerprint {ds.fingerprint[:16]}, {ds.elapsed_s:.2f} s")
    if ds.cache_path:
        typer.echo(f"  cache {ds.cache_path}")


@data_app.command("preview")
def preview(
    preset: str = typer.Argument(..., help=PRESET_HELP),
    out: Path = typer.Option(..., "--out", help="PNG file to write (refuses to overwrite)."),
    data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
    size: int = typer.Option(128, "--size", help="Resolution of each tile."),
    n: int = typer.Option(16, "--n", help="Number of images in the grid."),
    seed: int = typer.Option(0, "--seed", help="Seed of the phantom."),
    frames: str | None = typer.Option(
        None, "--frames", help="heart: ed_es (default), all, or 0,5,10."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Write a grid of example images of a preset."""
    import numpy as np

    from genbench.data import prepare_dataset
    from genbench.data.preview import write_grid

    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    if data is None:
        # The first slices of consecutive synthetic patients would look alike; spread the picks.
        ds = prepare_dataset(preset, size=size, n=max(n * 10, 20), seed=seed, use_cache=False)
    else:
        ds = prepare_dataset(preset, data_dir=data, size=size, seed=seed, options=_options(frames))
    import torch

    pool = torch.cat([ds.train.images, ds.test.images])
    idx = np.linspace(0, len(pool) - 1, num=min(n, len(pool))).round().astype(int)
    write_grid(pool[idx], out)
    typer.echo(f"{ds.description}: wrote {len(idx)} images to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
