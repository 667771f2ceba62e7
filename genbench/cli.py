"""The ``genbench`` command line. Each command group lives in ``genbench/commands/``."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape  # messages may hold brackets (paths, gloo's "[.../pair.cc:561]")

from genbench import __version__
from genbench.errors import GenbenchError

app = typer.Typer(
    name="genbench",
    help="Benchmark generative models of 2D medical images: train, sample, score, tabulate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"genbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """genbench: which generator makes the most realistic and diverse medical images?"""


def _register_commands() -> None:
    from genbench.commands import check, data, metrics, models, report, run, table

    for module in (metrics, data, models, run, table, check, report):
        module.register(app)
    __import__("genbench.commands.turing", fromlist=["register"]).register(app)
    __import__("genbench.commands.utility", fromlist=["register"]).register(app)


_register_commands()


def _is_click_error(exc: BaseException) -> bool:
    # typer ships its own copy of click, so match the class by name, not by identity.
    return any(c.__name__ == "ClickException" for c in type(exc).__mro__)


def _usage_line(exc: Exception) -> str:
    """One line: the command, the problem, and the closest valid option when one was mistyped."""
    message = " ".join(str(exc.format_message() if hasattr(exc, "format_message") else exc).split())
    ctx = getattr(exc, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None and getattr(ctx, "command_path", None) else ""
    name = getattr(exc, "option_name", None)
    if name and ctx is not None and "did you mean" not in message.lower():
        import difflib

        known = [o for p in ctx.command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        if close:
            message += f" (did you mean {close[0]}?)"
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{where}{message}{hint}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line and exit code 2, bugs exit 1 with a hint."""
    try:
        rc = app(args=argv, standalone_mode=False)  # click returns typer.Exit's code here
    except GenbenchError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # click's usage errors and genuine bugs
        if _is_click_error(exc):
            if not str(exc.format_message()).strip():  # no_args_is_help: the help was the message
                return 2
            err_console.print(f"[bold red]error:[/] {_usage_line(exc)}", highlight=False, soft_wrap=True)
            return 2
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            "This is a bug in genbench; please report it with the command you ran "
            "(set GENBENCH_DEBUG=1 for the traceback).",
            highlight=False,
            soft_wrap=True,
        )
        import os

        if os.environ.get("GENBENCH_DEBUG"):
            raise
        return 1
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
