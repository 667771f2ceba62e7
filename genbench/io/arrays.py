"""NumPy array decoders: ``.npy`` and ``.npz`` holding (H, W), (N, H, W) or (N, 1, H, W).

Arrays are loaded with ``allow_pickle=False``: an array file never executes code. An ``.npz``
with one array uses it; with several, the array named ``images`` (what ``write_npz`` writes).
genbench's own ``.npz`` files also carry a JSON ``meta`` entry whose ``value_range`` is honoured.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from genbench.errors import InputError
from genbench.io.decoded import DecodedFile, Range, frame_id, integer_dtype_range

META_KEY = "meta"
IMAGES_KEY = "images"


def _frames(path: Path, arr: np.ndarray) -> list[tuple[str, np.ndarray]]:
    if arr.dtype.kind not in "biuf":
        raise InputError(f"array of dtype {arr.dtype} is not an image (numbers expected)",
                         str(path))
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        return [(str(path), arr)]
    if arr.ndim == 3:
        return [(frame_id(path, k), arr[k]) for k in range(arr.shape[0])]
    raise InputError(
        f"array of shape {arr.shape} is not an image stack: expected (H, W), (N, H, W) "
        "or (N, 1, H, W)", str(path))


def _stored_meta(path: Path, npz: np.lib.npyio.NpzFile) -> dict:
    if META_KEY not in npz.files:
        return {}
    try:
        meta = json.loads(str(npz[META_KEY][()]))
    except (ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _range_from_meta(path: Path, meta: dict) -> Range | None:
    rng = meta.get("value_range")
    if rng is None:
        return None
    try:
        lo, hi = float(rng[0]), float(rng[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise InputError(f"invalid value_range {rng!r} in the file's meta", str(path)) from exc
    if not lo < hi:
        raise InputError(f"invalid value_range {rng!r} in the file's meta", str(path))
    return (lo, hi)


def decode_npy(path: Path) -> DecodedFile:
    arr = np.load(path, allow_pickle=False)
    if not isinstance(arr, np.ndarray):
        raise InputError("not a .npy array file", str(path))
    return DecodedFile(str(path), "npy", str(arr.dtype), _frames(path, arr),
                       integer_dtype_range(arr.dtype), physical=True,
                       bit_depth=arr.dtype.itemsize * 8)


def decode_npz(path: Path) -> DecodedFile:
    try:
        npz = np.load(path, allow_pickle=False)
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a readable .npz archive ({exc})", str(path)) from exc
    with npz:
        arrays = [k for k in npz.files if k != META_KEY]
        if not arrays:
            raise InputError(".npz archive holds no arrays", str(path))
        if len(arrays) == 1:
            key = arrays[0]
        elif IMAGES_KEY in arrays:
            key = IMAGES_KEY
        else:
            raise InputError(
                f".npz archive holds several arrays ({', '.join(sorted(arrays))}) and none is "
                f"named '{IMAGES_KEY}'", str(path))
        arr = npz[key]
        meta = _stored_meta(path, npz)
    return DecodedFile(str(path), "npz", str(arr.dtype), _frames(path, arr),
                       integer_dtype_range(arr.dtype), physical=True,
                       bit_depth=arr.dtype.itemsize * 8, stored_range=_range_from_meta(path, meta))
