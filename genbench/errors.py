"""Error types that the CLI turns into one clear line and an exit code."""

from __future__ import annotations


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
