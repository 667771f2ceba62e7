"""`genbench metrics REAL SYNTH`: every metric between two image folders (or files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from genbench.commands.options import with_eval_options
from genbench.errors import GenbenchError, InputError, UsageError, parse_range


def _help() -> str:
    from genbench.metrics.registry import REGISTRY

    names = "; ".join(f"{s.name} ({s.title}, {s.arrow})" for s in REGISTRY)
    groups = ", ".join(f"{k} = {'+'.join(v)}" for k, v in REGISTRY.selectors().items()
                       if k not in REGISTRY and k not in ("every",))
    return (
        "Score SYNTH against REAL with every registered metric.\n\n"
        f"Metrics: {names}. Groups: {groups}.\n\n"
        "REAL and SYNTH are folders (read recursively) or single files: PNG/TIFF 8/16-bit, NPY/NPZ, "
        "DICOM, NIfTI. With --train TRAIN (the generator's training images, read the same way) "
        "mem, the memorisation audit, is computed too.\n\n"
        "Exit codes: 0 done; 1 internal error (or a metric failed); 2 bad input or usage "
        "(with --strict also: a requested metric unavailable)."
    )


class StrictError(GenbenchError):
    """--strict and a requested metric was not computed."""


def _check_json_target(path: Path) -> None:
    """Refuse to replace a file that is not an earlier genbench metrics report (never clobber user files)."""
    if path.is_dir():
        raise InputError("--json target is a folder", str(path))
    if not path.exists():
        return
    try:
        prev = json.loads(path.read_text(encoding="utf-8"))
        ours = isinstance(prev, dict) and "genbench_version" in prev and "metrics" in prev
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        ours = False
    if not ours:
        raise InputError("exists and is not a genbench metrics report; refusing to overwrite it "
                         "(choose another --json path or remove the file)", str(path))


def _check_device(device: str) -> None:
    if device != "auto" and not (device == "cpu" or device.startswith("cuda") or device == "mps"):
        raise UsageError(f"--device must be cpu, cuda, cuda:N, mps or auto, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine")


def _fmt(r: Any) -> str:
    if r.status != "ok" or r.value is None:
        return "—"
    text = f"{r.value:.6g}"
    if r.std is not None:
        text += f" ± {r.std:.3g}"
    if r.ci is not None:
        text += f" [{r.ci[0]:.4g}, {r.ci[1]:.4g}]"
    return text


def floor_heading(info: dict[str, Any] | None) -> str:
    """The floor column's title: says prominently when the floor is not at the models' N."""
    if not info:
        return "real-vs-real floor"
    if info.get("size_matched"):
        return f"real-vs-real floor (n = {info['n_synth']}, size-matched)"
    if info.get("method") == "halves":
        return f"real-vs-real floor (halves: n = N/2 = {info['n_real']})"
    return f"real-vs-real floor (n = {info['n_real']}, smaller than N)"


def render_table(report: Any) -> Table:
    from genbench.metrics.registry import REGISTRY

    title = f"genbench metrics: {report.synth.n} synthetic vs {report.real.n} real images"
    level = report.options.ci if report.options.bootstrap else None
    if level is not None:
        title += f"; value ± std [{level:.0%} CI]"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("better", justify="center")
    table.add_column("value", justify="right")
    if report.floor is not None:
        table.add_column(floor_heading(report.floor_info), justify="right")
    table.add_column("status")
    shared: dict[str, list[str]] = {}
    for m in report.options.metrics:
        r = report.metrics[m]
        spec = REGISTRY[m]
        status = {"ok": "[green]ok[/]", "unavailable": "[yellow]unavailable[/]",
                  "failed": "[red]failed[/]"}[r.status]
        if r.reason and r.status != "ok":
            # A reason shared by several metrics (missing weights) is printed once, under the table.
            seen = shared.setdefault(r.reason, [])
            seen.append(spec.title)
            if len(seen) == 1:
                first = r.reason if len(r.reason) <= 90 else r.reason[:87] + "..."
                status += f" {first}"
            else:
                status += " (same reason as above)"
        row = [spec.title, spec.arrow, _fmt(r)]
        if report.floor is not None:
            row.append(_fmt(report.floor[m]))
        row.append(status)
        table.add_row(*row)
    return table


@with_eval_options("metrics")
def metrics_command(
    real: Annotated[Path, typer.Argument(help="Folder or file of real images.", show_default=False)],
    synth: Annotated[Path, typer.Argument(help="Folder or file of synthetic images.", show_default=False)],
    train: Annotated[Path | None, typer.Option(
        "--train", help="Folder or file of the generator's training images (for mem, the "
        "memorisation audit); read like REAL.", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")] = "auto",
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of IS shuffling and KID subsets (default: torch-fidelity's 2020), of FDS's t-SNE, "
        "the floor draw and the bootstrap (default: 0).", show_default=False)] = None,
    floor: Annotated[bool, typer.Option(
        "--floor", help="Also score the real-vs-real floor: REAL against --floor-real (size-matched), or "
        "two disjoint halves of REAL (n = N/2, labelled so).")] = False,
    floor_real: Annotated[Path | None, typer.Option(
        "--floor-real", help="A second real folder, disjoint from REAL (e.g. the training images): the floor "
        "compares REAL with an equally sized random sample of it. Implies --floor.", show_default=False)] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the full report as JSON (atomically).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 2 when a requested metric is unavailable (e.g. missing weights).")] = False,
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Skip unreadable files (listed in the report) instead of stopping.")] = False,
    resize: Annotated[int | None, typer.Option(
        "--resize", help="Resize every image to N x N (needed for folders of mixed sizes).")] = None,
    hu_window: Annotated[str | None, typer.Option(
        "--hu-window", help="LO,HI: CT window in HU mapped to [-1, 1] (DICOM/NIfTI), e.g. -1024,3012.")] = None,
    value_range: Annotated[str | None, typer.Option(
        "--value-range", help="LO,HI: raw value range mapped to [-1, 1] for arrays without a declared range.")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", help="Feature cache. Default: $GENBENCH_CACHE/features.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    *,
    eval_overrides: dict[str, Any],
) -> None:
    from genbench.metrics.pipeline import EvalOptions, evaluate
    from genbench.progress import rich_bars

    hu = parse_range(hu_window, "--hu-window")
    vr = parse_range(value_range, "--value-range")
    if resize is not None and resize < 8:
        raise UsageError(f"--resize must be >= 8 pixels, got {resize}")
    _check_device(device)
    from genbench import distributed

    job = distributed.init_from_env(device)  # torchrun / accelerate launch; one process otherwise
    quiet = quiet or not job.is_main  # only rank 0 draws progress and writes files
    options = EvalOptions(**{"device": device, "seed": seed, "floor": floor or floor_real is not None,
                             "strict": strict,
                             "cache_dir": cache_dir, "use_cache": not no_cache, **eval_overrides})
    if json_out is not None:
        _check_json_target(json_out)

    from genbench.io import atomic_write_json, read_image_folder

    err = Console(stderr=True)
    out = Console()
    if train is not None and not train.exists():
        raise InputError("no such file or folder (--train)", str(train))
    sets = {}
    inputs = [("real", real), ("synth", synth)] + ([("floor-real", floor_real)] if floor_real else [])
    inputs += [("train", train)] if train is not None else []
    for label, path in inputs:
        images = read_image_folder(path, resize=resize, skip_bad=skip_bad, hu_window=hu, value_range=vr,
                                   progress=not quiet)
        images.meta.setdefault("path", str(path))
        if images.skipped and job.is_main:
            err.print(f"[yellow]warning:[/] {label}: skipped {len(images.skipped)} file(s) (listed in the report)",
                      highlight=False)
        sets[label] = images

    if "train" in sets:
        from genbench.metrics.mem import check_train

        check_train(sets["real"], sets["train"])
    with rich_bars(err, not quiet) as progress:
        extra = {"floor_real": sets["floor-real"]} if "floor-real" in sets else {}
        if "train" in sets:
            extra["train"] = sets["train"]
        report = evaluate(sets["real"], sets["synth"], options, progress=progress, **extra)

    if job.is_main:
        out.print(render_table(report))
        if report.floor_info and not report.floor_info.get("size_matched"):
            out.print(f"[yellow]note:[/] floor: {report.floor_info['note']}; pass --floor-real DIR for a "
                      "size-matched floor.", highlight=False)
        if json_out is not None:
            atomic_write_json(json_out, report.to_json())
            out.print(f"wrote {json_out}", highlight=False)

    failed = [m for m, r in report.requested().items() if r.status == "failed"]
    failed += [f"floor.{m}" for m, r in (report.floor or {}).items()
               if m in report.options.metrics and r.status == "failed"]
    if failed:
        if job.is_main:
            err.print(f"[bold red]error:[/] metric(s) failed: {', '.join(failed)} (reasons in the table"
                      f"{' and the JSON' if json_out else ''}); this is a bug in genbench, please report it.",
                      highlight=False)
        raise typer.Exit(1)
    if strict:
        missing = report.not_ok()
        if missing:
            reasons = "; ".join(f"{m}: {r.reason}" for m, r in missing.items())
            raise StrictError(f"--strict: metric(s) not computed: {reasons}")


def register(app: typer.Typer) -> None:
    app.command("metrics", help=_help(), no_args_is_help=True)(metrics_command)
