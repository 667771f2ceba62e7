"""The one file hash: SHA-256 of a file's bytes, memoised per process.

The memo is keyed by the resolved path, inode, size and modification time (nanoseconds), so
a file that is rewritten or edited is hashed again, while repeated checks of an unchanged
file (weights checked before every evaluation, stage outputs verified on every rerun) read it
once.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["clear_hash_memo", "file_sha256"]

_CHUNK = 1 << 20
_MEMO: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at ``path`` (memoised while the file's stat is unchanged)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _MEMO.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while block := fh.read(_CHUNK):
                h.update(block)
        digest = _MEMO[key] = h.hexdigest()
    return digest


def clear_hash_memo() -> None:
    """Forget every memoised hash (for tests that edit files within one clock tick)."""
    _MEMO.clear()
