"""The one progress interface: metrics, training and the runner report through it.

A *progress factory* is ``factory(description, total) -> advance`` where ``advance(n, total=None)``
adds ``n`` done units (``total`` given later replaces the step's total: t-SNE and nearest-SSIM
learn theirs late). Library code receives a factory (or ``None``) and never imports rich;
:func:`rich_bars` is the terminal implementation the commands use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["Advance", "ProgressFactory", "Step", "plain_lines", "prefixed", "rich_bars", "silent"]


class Advance(Protocol):
    def __call__(self, n: int, total: int | None = None) -> None: ...


ProgressFactory = Callable[[str, "int | None"], Advance]


def silent(description: str, total: int | None) -> Advance:
    """A factory that draws nothing."""
    return lambda n, total=None: None


def prefixed(factory: ProgressFactory | None, prefix: str) -> ProgressFactory | None:
    """``factory`` with ``prefix`` before every step's description (e.g. the model's name)."""
    if factory is None:
        return None
    return lambda description, total: factory(f"{prefix}{description}", total)


def plain_lines(say: Callable[[str], None], every: float = 0.1) -> ProgressFactory:
    """For logs without a terminal (CI, nohup): one line per ``every`` of a step's total, with an
    estimate of the time left, instead of a bar. Steps without a total print nothing."""
    import time

    def factory(description: str, total: int | None) -> Advance:
        state = {"done": 0, "total": total, "mark": 0, "t0": time.time()}

        def advance(n: int, total: int | None = None) -> None:
            if total is not None:
                state["total"] = total
            state["done"] += n
            done, whole = state["done"], state["total"]
            if not whole or done >= whole:
                return
            mark = int(done / (every * whole))
            if mark > state["mark"]:
                state["mark"] = mark
                eta = (time.time() - state["t0"]) * (whole - done) / max(done, 1)
                say(f"{description}: {done}/{whole} ({100 * done // whole}%), ETA {eta:.0f} s")

        return advance

    return factory


class Step:
    """One progress step that always completes, even when the work inside it raises.

    Call it with a number of finished units, or use :meth:`absolute` for code that reports
    ``(done, total)`` pairs.
    """

    def __init__(self, factory: ProgressFactory | None, description: str, total: int | None) -> None:
        self.advance = (factory or silent)(description, total)
        self.total, self.done = total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        self.advance(n)

    def absolute(self, done: int, total: int) -> None:
        if total != self.total:
            self.total = total
            self.advance(0, total=total)
        if done > self.done:
            self(done - self.done)

    def __enter__(self) -> Step:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.total is None:
            self.advance(1, total=1)
            return
        left = self.total - self.done
        if left > 0:
            self.advance(left)


@contextmanager
def rich_bars(console: Any, enabled: bool = True, hide_done: bool = False) -> Iterator[ProgressFactory | None]:
    """A factory drawing rich bars (count, rate, elapsed, remaining) on ``console``; None when disabled.

    ``hide_done``: a finished step's bar disappears (a long pipeline shows only what runs now)."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f}/s" if task.speed and task.total and task.total > 1 else "")

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bars:
        yield bars_factory(bars, hide_done=hide_done)


def bars_factory(bars: Any, indent: str = "", hide_done: bool = False) -> ProgressFactory:
    """A factory that adds one task per step to an existing ``rich.progress.Progress``."""

    def factory(description: str, total: int | None) -> Advance:
        task = bars.add_task(f"{indent}{description}", total=total)

        def advance(n: int, total: int | None = None) -> None:
            if total is not None:
                bars.update(task, total=total)
            bars.advance(task, n)
            if hide_done and bars.tasks[bars.task_ids.index(task)].finished:
                bars.update(task, visible=False)

        return advance

    return factory
