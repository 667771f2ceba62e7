"""Atomic file writes: a reader sees either the old file or the complete new one, never half.

The data goes to a temporary file in the destination folder (same filesystem, so the final
``os.replace`` is a rename, atomic on POSIX and Windows), is flushed and fsync'ed, and only
then replaces the destination; the folder is fsync'ed after the rename so the rename itself
survives a power cut. On any failure the temporary file is removed and the destination is
untouched. This is the project's one atomic writer: checkpoints, caches, results and images
all go through :func:`atomic_write_stream`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_stream", "atomic_write_text"]


def _fsync_dir(folder: Path) -> None:
    # Persist the rename itself; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_stream(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, then move it into place.

    For writers that stream into a file handle (``torch.save``, ``np.savez``): the file is
    flushed and fsync'ed before the rename and the folder after it, so after a crash the
    destination holds the old or the complete new content. Creates missing parent folders.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    return dest


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; creates missing parent folders. Returns the path."""
    return atomic_write_stream(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default, newlines written as given)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _json_ready(obj: Any) -> Any:
    """Plain JSON values: NaN/Inf become null (JSON has no NaN), numpy scalars and arrays become
    Python numbers and lists, paths become strings; mapping keys become strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, str) else k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "tolist", None)  # numpy scalars/arrays, torch tensors
    if callable(item) and type(obj).__module__.split(".")[0] in ("numpy", "torch"):
        return _json_ready(item())
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Serialise ``obj`` as standard JSON and write it atomically.

    Non-finite floats are written as ``null`` (standard JSON has no NaN/Inf); numpy and torch
    numbers/arrays are converted to plain lists and numbers.
    """
    text = json.dumps(_json_ready(obj), indent=indent, allow_nan=False)
    return atomic_write_text(path, text + "\n")
