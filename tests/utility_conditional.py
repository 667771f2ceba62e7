"""A tiny class-conditional generator for the tests of ``genbench run --utility``.

Per class, it fits the mean and the standard deviation of every pixel and samples independent
Gaussian pixels from them (a real, if crude, conditional model). It declares
``class_conditional = True``: it reads the training classes from ``train.meta["labels"]`` and
draws the class set in ``sample_class``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genbench.protocol import FitResult

FITS: list[dict] = []  # what every fit saw (count, mean, labels), for the tests


@dataclass
class PixelGaussianConfig:
    resolution: int = field(default=16, metadata={"role": "architecture"})
    shrink: float = field(default=1.0, metadata={"role": "training"})
    steps: int = field(default=1, metadata={"role": "training"})
    device: str | None = field(default=None, metadata={"role": "runtime"})


class PixelGaussian:
    name = "pixel-gaussian"
    class_conditional = True

    def __init__(self, config: PixelGaussianConfig) -> None:
        self.config = config
        self.sample_class: int | None = None
        self.mean = self.std = None

    def fit(self, train, *, workdir: Path | None = None, steps=None, seed=0, progress=None):
        labels = np.asarray(train.meta["labels"])
        x = train.images
        FITS.append({"n": len(x), "mean": float(x.double().mean()), "labels": labels.tolist()})
        k = int(labels.max()) + 1
        self.mean = torch.stack([x[torch.from_numpy(labels == c)].mean(0) for c in range(k)])
        self.std = torch.stack([x[torch.from_numpy(labels == c)].std(0) for c in range(k)])
        self.std = self.std * self.config.shrink
        return FitResult(steps=1)

    def sample(self, n, *, seed=0, batch_size=None):
        if self.sample_class is None:
            raise ValueError("pixel-gaussian samples one class at a time (set sample_class)")
        g = torch.Generator().manual_seed(seed)
        c = self.sample_class
        noise = torch.randn((n, *self.mean.shape[1:]), generator=g)
        return (self.mean[c] + self.std[c] * noise).clamp(-1, 1)

    def save(self, path):
        from safetensors.torch import save_file

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.mean.contiguous(), "std": self.std.contiguous()}, str(path))

    def load(self, path):
        from safetensors.torch import load_file

        got = load_file(str(path))
        self.mean, self.std = got["mean"], got["std"]

    def num_parameters(self) -> int:
        return 0 if self.mean is None else 2 * self.mean.numel()


class UnconditionalPixelGaussian(PixelGaussian):
    """The same model without classes: one mean and one std per pixel."""

    name = "pixel-gaussian-uncond"
    class_conditional = False

    def fit(self, train, *, workdir: Path | None = None, steps=None, seed=0, progress=None):
        x = train.images
        FITS.append({"n": len(x), "mean": float(x.double().mean()), "labels": None})
        self.mean, self.std = x.mean(0, keepdim=True), x.std(0, keepdim=True) * self.config.shrink
        return FitResult(steps=1)

    def sample(self, n, *, seed=0, batch_size=None):
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn((n, *self.mean.shape[1:]), generator=g)
        return (self.mean[0] + self.std[0] * noise).clamp(-1, 1)


def create(preset: str = "quick", resolution: int | None = None, **overrides) -> PixelGaussian:
    return PixelGaussian(PixelGaussianConfig(resolution=resolution or 16, **overrides))


def create_unconditional(preset: str = "quick", resolution: int | None = None, **overrides):
    return UnconditionalPixelGaussian(PixelGaussianConfig(resolution=resolution or 16, **overrides))
