"""Command-line options declared once: every :class:`~genbench.metrics.pipeline.EvalOptions` field
with ``cli`` metadata becomes an option of ``genbench metrics`` and (unless ``run=False``) of
``genbench run``, with the same name, type, default and help in both.

:func:`with_eval_options` extends a typer command's signature with those options and hands the
command one ``eval_overrides`` dict holding the values the user set (defaults stay with
``EvalOptions``), so a metric plug-in that adds a field gets its flag everywhere at once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

_UNSET: Any = None

# A data set's class labels, the same three options in `genbench data prepare` and `genbench run`.
LABELS_OPTION = typer.Option(
    None, "--labels", help="Class labels: phantom (its finding) | folders (DIR/<class>/...)."
)
LABEL_FINDING_OPTION = typer.Option(
    None, "--label-finding", help="chest: Data_Entry_2017.csv finding vs 'No Finding'."
)
FINDING_STRENGTH_OPTION = typer.Option(
    None, "--finding-strength", help="Labelled phantom: visibility of the finding (default 1)."
)


def eval_option_fields(command: str) -> list[dataclasses.Field]:
    from genbench.metrics.pipeline import EvalOptions

    out = []
    for f in dataclasses.fields(EvalOptions):
        meta = f.metadata
        if "cli" in meta and (command == "metrics" or meta.get("run", True)):
            out.append(f)
    return out


def _cli_type(f: dataclasses.Field) -> Any:
    from genbench.metrics import pipeline

    hints = typing.get_type_hints(pipeline.EvalOptions)
    tp = hints[f.name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    if f.name == "metrics" or typing.get_origin(base) is tuple:
        return str
    return base if base in (int, float, str, bool, Path) else str


def with_eval_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the shared evaluation options to a typer command; it receives ``eval_overrides``."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        fields = eval_option_fields(command)
        sig = inspect.signature(func, eval_str=True)  # typer needs resolved Annotated[...] types
        params = [p for p in sig.parameters.values() if p.name != "eval_overrides"]
        names = {f.name for f in fields}
        for f in fields:
            tp = _cli_type(f)
            flag = f.metadata["cli"]
            if tp is bool:
                decl = typer.Option(f"{flag}/--no-{flag[2:]}", help=f.metadata["help"])
            else:
                decl = typer.Option(flag, help=f.metadata["help"], show_default=False)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=_UNSET,
                                            annotation=Annotated[tp | None, decl]))

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            overrides = {k: v for k, v in overrides.items() if v is not None}
            return func(*args, eval_overrides=overrides, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
