"""The Python API: score synthetic images from a notebook or inside a training loop.

``genbench.evaluate(real, synth)`` returns the same report as ``genbench metrics --json``
(:class:`~genbench.metrics.pipeline.EvalReport`; ``report.to_json()`` is that JSON).
``genbench.prepare_real(real)`` computes the real side once (Inception features, nearest-SSIM
statistics, ...) so that scoring a new synthetic set every N training steps costs only the
synthetic side.

Inputs are folders or files (read like ``genbench metrics`` reads them), :class:`ImageSet`,
or arrays/tensors shaped (N, H, W), (N, 1, H, W) or (N, H, W, 1) in [-1, 1] (float) or
uint8 (0..255, mapped to [-1, 1]).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from genbench.errors import UsageError
from genbench.imageset import ImageSet

__all__ = ["as_imageset", "evaluate", "prepare_real"]

ImagesLike = Any  # str | os.PathLike | ImageSet | np.ndarray | torch.Tensor


def as_imageset(images: ImagesLike, *, what: str = "images") -> ImageSet:
    """An :class:`ImageSet` from a folder/file path, an ImageSet, or an array/tensor."""
    if isinstance(images, ImageSet):
        return images
    if isinstance(images, (str, os.PathLike)):
        from genbench.io import read_image_folder

        out = read_image_folder(images)
        out.meta.setdefault("path", str(images))
        return out
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] != 1 and x.shape[-1] == 1:
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] != 1:
        raise UsageError(f"{what}: expected (N, H, W), (N, 1, H, W) or (N, H, W, 1) single-channel images, "
                         f"got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    elif not torch.is_floating_point(x):
        raise UsageError(f"{what}: expected float images in [-1, 1] or uint8, got dtype {x.dtype}")
    else:
        x = x.float()
        lo, hi = float(x.min()), float(x.max())
        if lo < -1.0001 or hi > 1.0001:
            raise UsageError(f"{what}: float images must lie in [-1, 1] (genbench's canonical range), "
                             f"got [{lo:.4g}, {hi:.4g}]; rescale them or pass uint8")
    return ImageSet(images=x.clamp(-1, 1))


def _options(metrics: str | Iterable[str] | None, options: dict[str, Any]) -> Any:
    from genbench.metrics.pipeline import EvalOptions

    if metrics is not None:
        options["metrics"] = metrics
    import dataclasses

    known = {f.name for f in dataclasses.fields(EvalOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return EvalOptions(**options)


def evaluate(real: ImagesLike, synth: ImagesLike, *, metrics: str | Iterable[str] | None = None,
             train: ImagesLike | None = None, progress: Any = None, **options: Any) -> Any:
    """Score ``synth`` against ``real`` with the registered metrics; options as :class:`EvalOptions`.

    >>> report = genbench.evaluate("real/", fake_tensor, metrics="fds,ds", fds_seeds=1)
    >>> report.metrics["ds"].value, report.to_json()
    """
    from genbench.metrics.pipeline import evaluate as run

    opts = _options(metrics, options)
    return run(as_imageset(real, what="real"), as_imageset(synth, what="synth"), opts, progress=progress,
               train=None if train is None else as_imageset(train, what="train"))


def prepare_real(real: ImagesLike, *, metrics: str | Iterable[str] | None = None,
                 train: ImagesLike | None = None, **options: Any) -> Any:
    """The real side computed once: ``prepared.evaluate(synth)`` scores each new synthetic set."""
    from genbench.metrics.pipeline import PreparedReal

    return PreparedReal(real=as_imageset(real, what="real"), options=_options(metrics, options),
                        train=None if train is None else as_imageset(train, what="train"))
