"""The Generator protocol and the entry-point registry.

A generator is anything that can be fitted to a canonical image tensor and sampled from.
genbench never imports a model package: models announce themselves under the entry-point
group ``genbench.generators`` as ``name = "package.module:factory"``, where
``factory(preset: str = "quick", resolution: int | None = None, **overrides) -> Generator``.

Class-conditional sampling (optional; used by ``genbench run --utility``): a generator whose
class attribute ``class_conditional`` is true reads the class of every training image from
``train.meta["labels"]`` (int array aligned with the images) in ``fit``, and draws the class
held in its ``sample_class`` attribute (an int; None: not conditioned) in ``sample``. It is
then trained once; every other generator is trained once per class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch

from genbench.errors import UsageError
from genbench.progress import ProgressFactory

ENTRY_POINT_GROUP = "genbench.generators"


@dataclass
class FitResult:
    """What a fit reports back: the steps done and the loss history (one dict per logged step)."""

    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None




@runtime_checkable
class Generator(Protocol):
    """What every model offers. Tensors are canonical: float32 (N, 1, H, W) in [-1, 1]."""

    name: str
    config: Any  # a dataclass instance; ``dataclasses.asdict`` gives the resolved config

    def fit(
        self,
        train: torch.Tensor,
        *,
        workdir: Path | None = None,
        steps: int | None = None,
        seed: int = 0,
        progress: ProgressFactory | None = None,
    ) -> FitResult:
        """Train on ``train``. With ``workdir``, checkpoint atomically there and resume from it.
        ``progress``: a :mod:`genbench.progress` factory (one ``train`` step of ``steps``)."""
        ...

    def sample(self, n: int, *, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
        """Draw ``n`` images; the same seed gives the same images."""
        ...

    def save(self, path: Path) -> None:
        """Write the weights needed for sampling (safetensors or weights-only torch)."""
        ...

    def load(self, path: Path) -> None:
        """Read weights written by ``save``; never unpickles arbitrary objects."""
        ...

    def num_parameters(self) -> int:
        ...


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_generators() -> list[str]:
    """Names of the installed generators, sorted."""
    return sorted(_entry_points())


def get_factory(name: str) -> Callable[..., Generator]:
    eps = _entry_points()
    if name not in eps:
        installed = ", ".join(sorted(eps)) or "none"
        raise UsageError(f"unknown generator {name!r}; installed: {installed}")
    return eps[name].load()


def create_generator(
    name: str, preset: str = "quick", resolution: int | None = None, **overrides: Any
) -> Generator:
    """Build a registered generator from one of its named presets."""
    return get_factory(name)(preset=preset, resolution=resolution, **overrides)


DEFAULT_PRESETS = ("quick", "paper")


def factory_presets(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The preset names a factory offers: its (or its class's) ``presets`` mapping when it
    has one, else the two every generator must have."""
    for owner in (factory, getattr(factory, "__self__", None)):
        presets = getattr(owner, "presets", None)
        if isinstance(presets, dict) and presets:
            return tuple(presets)
    return DEFAULT_PRESETS
