"""On-disk cache of prepared data sets: ``<key>.npz`` (arrays) plus ``<key>.json`` (manifest).

The manifest records the preprocessing parameters and, per input file, its size, mtime and
SHA-256. A later run re-hashes only files whose size or mtime changed, so a cache check on
an unchanged folder costs a ``stat`` per file, while a touched-but-identical file still hits.
Both files are written atomically; the manifest goes last, so its presence means the arrays
are complete.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from genbench.cache import cache_dir
from genbench.io.atomic import atomic_write_json, atomic_write_stream
from genbench.io.hashing import file_sha256

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$GENBENCH_CACHE/datasets`` (see :mod:`genbench.cache`)."""
    return cache_dir("datasets")


def digest_inputs(
    files: list[Path], root: Path, previous: dict[str, dict] | None = None
) -> dict[str, dict]:
    """``relpath -> {size, mtime_ns, sha256}``, reusing ``previous`` hashes when stat matches."""
    out = {}
    for p in sorted(set(files)):
        st = p.stat()
        rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)
        old = (previous or {}).get(rel)
        if old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
            sha = old["sha256"]
        else:
            sha = file_sha256(p)
        out[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    return out


def fingerprint(params: dict[str, Any], inputs: dict[str, dict] | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(params, sort_keys=True).encode())
    for rel, info in sorted((inputs or {}).items()):
        h.update(f"\n{rel}\t{info['sha256']}".encode())
    return h.hexdigest()


def cache_key(preset: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return f"{preset}-{digest}"


def read_manifest(folder: Path, key: str) -> dict | None:
    path = folder / f"{key}.json"
    if not path.is_file() or not (folder / f"{key}.npz").is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged cache entry is rebuilt, never trusted
    return manifest if manifest.get("cache_version") == CACHE_VERSION else None


def load_arrays(folder: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(folder / f"{key}.npz", allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:
        return None


def write_entry(folder: Path, key: str, arrays: dict[str, np.ndarray], manifest: dict) -> Path:
    dest = atomic_write_stream(folder / f"{key}.npz", lambda fh: np.savez(fh, **arrays))
    atomic_write_json(folder / f"{key}.json", {"cache_version": CACHE_VERSION, **manifest})
    return dest
