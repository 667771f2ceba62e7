"""What every model plug-in shares: a config dataclass with presets, and a Generator base class
that plugs a model's networks and :class:`genbench.training.TrainingTask` into the engine.

A model subclasses :class:`BaseConfig` (adding its hyper-parameters) and
:class:`BaseGenerator`, implementing ``build`` (create the networks from the current torch
RNG), ``networks`` / ``ema_networks`` (what is trained / what is averaged; both are saved),
``make_task`` and ``generate``. Its module exposes ``create = MyGenerator.factory``.
Nothing here knows any particular model: baselines/ and mtddpm/ both build on it.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from genbench.devices import resolve_device
from genbench.errors import InputError, UsageError
from genbench.identity import ROLES, checkpoint_identity, config_values
from genbench.progress import ProgressFactory
from genbench.protocol import FitResult
from genbench.training import EngineConfig, TrainingTask, fit_task

MIN_RESOLUTION, MAX_RESOLUTION = 16, 256


def role(name: str) -> dict[str, str]:
    """Field metadata declaring a config field's role (see :mod:`genbench.identity`):
    ``field(default=..., metadata=role("training"))`` is ``metadata={"role": "training"}``."""
    if name not in ROLES:
        raise ValueError(f"unknown role {name!r}; use one of {', '.join(ROLES)}")
    return {"role": name}


@dataclass
class BaseConfig:
    """Knobs every model has. ``steps`` counts optimisation steps (a GAN step is one
    generator update with its critic updates). ``device=None``: the GPU when there is one.

    Every field declares its role, and so must every field a model adds: the runner derives
    from the roles what a change reruns (see :mod:`genbench.identity`)."""

    resolution: int = field(default=32, metadata=role("architecture"))
    batch_size: int = field(default=16, metadata=role("training"))
    steps: int = field(default=1000, metadata=role("training"))
    lr: float = field(default=2e-4, metadata=role("training"))
    ema_decay: float = field(default=0.999, metadata=role("training"))
    checkpoint_every: int = field(default=500, metadata=role("runtime"))
    log_every: int = field(default=10, metadata=role("runtime"))
    # Numerics differ between precisions, so a change trains anew.
    mixed_precision: str = field(default="no", metadata=role("training"))
    device: str | None = field(default=None, metadata=role("runtime"))
    # Sampling: a diffusion sampler draws fresh noise per batch, so the batch size changes
    # which images a seed gives (for the GANs it only changes memory use).
    sample_batch_size: int = field(default=64, metadata=role("sampling"))


def check_resolution(resolution: int) -> None:
    if (
        not isinstance(resolution, int)
        or resolution < MIN_RESOLUTION
        or resolution > MAX_RESOLUTION
        or resolution & (resolution - 1)
    ):
        raise UsageError(
            f"resolution must be a power of two from {MIN_RESOLUTION} to {MAX_RESOLUTION}, "
            f"got {resolution!r}"
        )


def resolve_config(
    config_class: type[BaseConfig],
    presets: dict[str, dict[str, Any]],
    model: str,
    preset: str,
    resolution: int | None,
    overrides: dict[str, Any],
) -> BaseConfig:
    """Preset values, then ``resolution``, then ``overrides``; unknown names are UsageErrors.

    The config's values are checked by the generator's ``check_config`` when it is built."""
    if preset not in presets:
        raise UsageError(f"{model}: unknown preset {preset!r}; choose one of {', '.join(presets)}")
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(
            f"{model}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    values = dict(presets[preset])
    if resolution is not None:
        values["resolution"] = resolution
    values.update(overrides)
    return config_class(**values)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def as_training_tensor(train: Any, resolution: int, model: str) -> torch.Tensor:
    """Accept an ImageSet or a tensor; insist on canonical (N, 1, R, R) float in [-1, 1]."""
    images = getattr(train, "images", train)
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{model}: training data must be a tensor or an ImageSet")
    if images.ndim != 4 or images.shape[1] != 1:
        raise InputError(
            f"{model}: training images must be (N, 1, H, W) single-channel, got {tuple(images.shape)}"
        )
    if images.shape[-2:] != (resolution, resolution):
        raise InputError(
            f"{model}: configured for {resolution}x{resolution} but the training images are "
            f"{images.shape[-2]}x{images.shape[-1]}; pass resolution={images.shape[-1]} or resize"
        )
    if len(images) == 0:
        raise InputError(f"{model}: the training set is empty")
    images = images.detach().to("cpu", torch.float32).contiguous()
    if not torch.isfinite(images).all() or images.min() < -1.0001 or images.max() > 1.0001:
        raise InputError(f"{model}: training images must be finite and within [-1, 1]")
    return images


class BaseGenerator(ABC):
    """A Generator (genbench.protocol) whose training runs on the shared engine."""

    name: ClassVar[str]
    config_class: ClassVar[type[BaseConfig]] = BaseConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: How genbench.testing makes this model small and fast (ConformanceSettings fields).
    conformance: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: BaseConfig, *, init_seed: int = 0) -> None:
        self.check_config(config)
        resolve_device(config.device, option=f"{self.name}: device")
        self.config = config
        self._init(init_seed)

    # -- what a model provides --------------------------------------------------------------

    @classmethod
    def check_config(cls, config: BaseConfig) -> None:
        """Raise UsageError for values the model cannot build with. Default: the resolution."""
        check_resolution(config.resolution)

    @abstractmethod
    def build(self) -> None:
        """Create the networks (as attributes) from the current torch RNG state."""

    @abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """The trained networks by name (counted by ``num_parameters``)."""

    def ema_networks(self) -> dict[str, nn.Module]:
        """EMA copies by name (saved with the weights, not counted). Default: none."""
        return {}

    @abstractmethod
    def make_task(self) -> TrainingTask:
        """The engine's view of this model: networks, optimizers, EMA, one step."""

    @abstractmethod
    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` samples (N, 1, R, R) on ``self.device``; all randomness from ``generator``
        (a CPU generator: draw on CPU, then move, so samples do not depend on the device)."""

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def factory(
        cls, preset: str = "quick", resolution: int | None = None, **overrides: Any
    ) -> BaseGenerator:
        """The entry-point factory: ``create(preset="quick", resolution=None, **overrides)``."""
        init_seed = int(overrides.pop("init_seed", 0))
        config = resolve_config(cls.config_class, cls.presets, cls.name, preset, resolution, overrides)
        return cls(config, init_seed=init_seed)

    def _init(self, seed: int) -> None:
        # Weights depend only on the seed, never on whatever ran before in this process.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.build()
        for m in self._all_modules().values():
            m.to(self.device)
            m.eval()

    @property
    def device(self) -> torch.device:
        return torch.device(resolve_device(self.config.device, option=f"{self.name}: device"))

    def _all_modules(self) -> dict[str, nn.Module]:
        mods = dict(self.networks())
        mods.update({f"ema.{k}": v for k, v in self.ema_networks().items()})
        return mods

    # -- the Generator protocol -------------------------------------------------------------

    def fit(
        self,
        train: Any,
        *,
        workdir: Path | None = None,
        steps: int | None = None,
        seed: int = 0,
        progress: ProgressFactory | None = None,
    ) -> FitResult:
        """Train from scratch (weights re-initialised from ``seed``) or resume from ``workdir``.

        ``seed`` fixes the initial weights, the data order and all training noise.
        """
        data = as_training_tensor(train, self.config.resolution, self.name)
        self._init(seed)
        cfg = self.config
        engine_cfg = EngineConfig(
            steps=cfg.steps if steps is None else int(steps),
            batch_size=cfg.batch_size,
            seed=seed,
            mixed_precision=cfg.mixed_precision,  # type: ignore[arg-type]
            device=cfg.device,
            checkpoint_every=cfg.checkpoint_every,
            log_every=cfg.log_every,
        )
        identity = checkpoint_identity(self.name, self.config, type(self))
        result = fit_task(
            self.make_task(), data, engine_cfg, workdir=workdir, progress=progress, identity=identity
        )
        for m in self._all_modules().values():
            m.eval()
        return result

    def sample(self, n: int, *, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
        """``n`` images (N, 1, R, R) float32 in [-1, 1] on the CPU; same seed, same images."""
        return self._sample_batches(n, seed=seed, batch_size=batch_size)

    @torch.no_grad()
    def _sample_batches(
        self, n: int, *, seed: int, batch_size: int | None, **options: Any
    ) -> torch.Tensor:
        # ``options`` go to ``generate``: a model whose sample() takes sampler options (mt-ddpm)
        # overrides sample() and passes them here; the batching and seeding stay shared.
        if n < 0:
            raise UsageError(f"cannot sample {n} images")
        bs = batch_size or self.config.sample_batch_size
        g = torch.Generator().manual_seed(int(seed))
        for m in self._all_modules().values():
            m.eval()
        out = []
        done = 0
        while done < n:
            k = min(bs, n - done)
            x = self.generate(k, g, **options)
            out.append(x.float().clamp_(-1.0, 1.0).cpu())
            done += k
        r = self.config.resolution
        if not out:
            return torch.empty(0, 1, r, r)
        return torch.cat(out)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {
            f"{mod}.{k}": v.detach().cpu().contiguous()
            for mod, m in self._all_modules().items()
            for k, v in m.state_dict().items()
        }

    def save(self, path: Path) -> None:
        """Weights (trained + EMA) as safetensors, with the model name and config as metadata."""
        from safetensors.torch import save as st_save

        from genbench.io.atomic import atomic_write_bytes

        meta = {
            "genbench_model": self.name,
            "config": json.dumps(dataclasses.asdict(self.config), sort_keys=True),
        }
        atomic_write_bytes(Path(path), st_save(self.state_tensors(), metadata=meta))

    def load(self, path: Path) -> None:
        """Read weights written by :meth:`save` (safetensors: no code is ever unpickled)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise InputError("no such weights file", str(path))
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is no dict)
        except Exception as exc:  # noqa: BLE001 (any failure to read is the same user error)
            raise InputError(f"not a readable safetensors file ({exc})", str(path)) from None
        if meta.get("genbench_model") != self.name:
            raise InputError(
                f"weights are for model {meta.get('genbench_model')!r}, not {self.name!r}", str(path)
            )
        saved = json.loads(meta.get("config", "{}"))
        for key, mine in config_values(self.config, ("architecture",), type(self)).items():
            if key in saved and saved[key] != mine:
                raise InputError(
                    f"weights were trained with {key}={saved[key]!r}, this model has "
                    f"{key}={getattr(self.config, key)!r}",
                    str(path),
                )
        for mod, m in self._all_modules().items():
            prefix = f"{mod}."
            sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                m.load_state_dict(sd)
            except RuntimeError as exc:
                raise InputError(f"weights do not fit {self.name} network {mod!r}: {exc}", str(path))
            m.to(self.device).eval()

    def num_parameters(self) -> int:
        """Parameters of the trained networks (EMA copies not counted)."""
        return sum(count_parameters(m) for m in self.networks().values())

    def parameter_counts(self) -> dict[str, int]:
        return {k: count_parameters(m) for k, m in self.networks().items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

