"""Error types that the CLI turns into one clear line and an exit code."""

from __future__ import annotations

import math


class GenbenchError(Exception):
    """Base class for errors a user can act on."""

    exit_code = 2


class InputError(GenbenchError):
    """Bad input: a file, a folder, an option. The message names the file and the problem."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UsageError(GenbenchError):
    """A bad combination of options or arguments."""


class WeightsUnavailableError(GenbenchError):
    """Model weights that cannot be downloaded here are absent; the message says how to provide them."""


def parse_range(text: str | None, option: str, *, also: str = "") -> tuple[float, float] | None:
    """``LO,HI`` (or ``LO:HI``) of an option as two finite floats with LO < HI; None stays None.

    ``also`` names another accepted spelling in the message (e.g. "'full' or ")."""
    if text is None:
        return None
    parts = str(text).replace(":", ",").split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{option} expects {also}LO,HI (two numbers), got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UsageError(f"{option} expects finite LO < HI, got {text!r}")
    return lo, hi
