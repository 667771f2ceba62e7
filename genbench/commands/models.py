"""`genbench models`: the installed generators, with parameter counts for each preset."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, is_dataclass

import typer


@dataclass
class ModelRow:
    name: str
    preset: str
    resolution: int | None = None
    parameters: int | None = None
    breakdown: dict[str, int] | None = None
    target: str = ""
    error: str | None = None
    build_s: float = 0.0


def _describe(name: str, preset: str, target: str) -> ModelRow:
    """Instantiate one preset at its default resolution; any failure becomes the row's error."""
    from genbench.protocol import create_generator

    row = ModelRow(name=name, preset=preset, target=target)
    t0 = time.perf_counter()
    try:
        gen = create_generator(name, preset=preset)
        cfg = gen.config
        row.resolution = getattr(cfg, "resolution", None) if is_dataclass(cfg) else None
        row.parameters = int(gen.num_parameters())
        counts = getattr(gen, "parameter_counts", None)
        if callable(counts):
            row.breakdown = {k: int(v) for k, v in counts().items()}
    except Exception as exc:  # a broken plug-in must not hide the others
        row.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    row.build_s = time.perf_counter() - t0
    return row


def list_models(presets: list[str] | None = None) -> list[ModelRow]:
    """One row per (installed generator, preset); presets default to each model's own list."""
    from importlib.metadata import entry_points

    from genbench.protocol import ENTRY_POINT_GROUP, factory_presets

    rows: list[ModelRow] = []
    eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    for ep in eps:
        try:
            factory = ep.load()
        except Exception as exc:
            rows.append(ModelRow(name=ep.name, preset="-", target=ep.value,
                                 error=f"cannot import: {type(exc).__name__}: {exc}".splitlines()[0]))
            continue
        for preset in presets or factory_presets(factory):
            rows.append(_describe(ep.name, preset, ep.value))
    return rows


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def _table(rows: list[ModelRow]) -> str:
    head = ("model", "preset", "resolution", "parameters", "networks")
    body = []
    for r in rows:
        if r.error:
            body.append((r.name, r.preset, "-", "-", f"error: {r.error}"))
            continue
        nets = ", ".join(f"{k} {_fmt_params(v)}" for k, v in (r.breakdown or {}).items())
        res = f"{r.resolution}x{r.resolution}" if r.resolution else "-"
        body.append((r.name, r.preset, res, _fmt_params(r.parameters), nets))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(4)]
    lines = []
    for cells in [head, *body]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(cells[:4], widths)) + "  " + cells[4])
    return "\n".join(line.rstrip() for line in lines)


def models(
    preset: list[str] = typer.Option(
        None, "--preset", "-p", help="Only these presets (repeatable); default: each model's own."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """List installed generators (entry-point group genbench.generators) and their sizes.

    Each preset is instantiated at its default resolution to count parameters; a model that
    fails to load is listed with its error.
    """
    rows = list_models(list(preset) if preset else None)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    if not rows:
        typer.echo("no generators installed (entry-point group genbench.generators)")
        return
    typer.echo(_table(rows))


def register(app: typer.Typer) -> None:
    app.command("models")(models)


