"""The one cache root: every cache genbench keeps lives in a subfolder of it.

``$GENBENCH_CACHE`` when set, else ``$XDG_CACHE_HOME/genbench``, else ``~/.cache/genbench``.
Subfolders by kind: ``features`` (Inception and other backbone features), ``datasets``
(prepared real data sets and phantoms), ``radiomics``, ... Everything in it can be rebuilt;
nothing a user made is kept there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from genbench.errors import UsageError

__all__ = ["CACHE_ENV", "cache_dir", "cache_root"]

CACHE_ENV = "GENBENCH_CACHE"
_RETIRED = "GENBENCH_CACHE_DIR"
_KIND = re.compile(r"^[a-z][a-z0-9_-]*$")


def cache_root() -> Path:
    """The folder every genbench cache lives under (not created here)."""
    if os.environ.get(_RETIRED) and not os.environ.get(CACHE_ENV):
        # Silently ignoring it would rebuild every cache somewhere else without a word.
        raise UsageError(f"${_RETIRED} is no longer read: set ${CACHE_ENV} instead "
                         f"(one root for every cache; data sets go to $GENBENCH_CACHE/datasets)")
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "genbench"


def cache_dir(kind: str) -> Path:
    """``cache_root() / kind`` for a cache kind such as ``features`` or ``datasets``."""
    if not _KIND.match(kind):
        raise ValueError(f"cache kind must be a lower-case name, got {kind!r}")
    return cache_root() / kind
