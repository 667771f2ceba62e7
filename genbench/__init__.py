"""genbench: an evaluation-first benchmark for generative models of 2D medical images.

Python API: :func:`evaluate` and :func:`prepare_real` (see ``genbench.api``).
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "prepare_real"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import genbench` (and the CLI's start-up) does not import torch.
    if name in ("evaluate", "prepare_real", "as_imageset"):
        from genbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'genbench' has no attribute {name!r}")
