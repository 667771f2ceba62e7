"""The one device check: every command, the runner, the training engine and the metrics
resolve a device spec here, so a device that cannot be used is refused up front, in one line,
before any data is prepared or any model trained.
"""

from __future__ import annotations

import re

import torch

from genbench.errors import UsageError

__all__ = ["DEVICE_HELP", "resolve_device"]

DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (auto: the GPU when there is one)"
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: str | None, option: str = "--device") -> str:
    """A usable torch device string for ``spec``; UsageError naming ``option`` if there is none.

    ``None`` and ``"auto"`` pick ``"cuda"`` when a CUDA GPU is present, else ``"cpu"``.
    ``"cuda"`` and ``"cuda:N"`` need that GPU to exist; ``"mps"`` needs Apple's backend.
    """
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"{option} mps: Apple's MPS backend is not available on this machine")
        return "mps"
    m = _CUDA.match(text)
    if m is None:
        raise UsageError(f"{option} must be {DEVICE_HELP}; got {spec!r}")
    if not torch.cuda.is_available():
        raise UsageError(f"{option} {text}: no CUDA GPU is available on this machine")
    if m.group(1) is not None:
        index, count = int(m.group(1)), torch.cuda.device_count()
        if index >= count:
            have = ", ".join(f"cuda:{i}" for i in range(count))
            raise UsageError(f"{option} {text}: this machine has {count} CUDA GPU(s) ({have})")
    return text
