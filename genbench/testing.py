"""The Generator conformance suite: every installed model is checked the same way.

Like scikit-learn's ``parametrize_with_checks``: each check is its own function, run on a
fresh model built by the plug-in's factory at a small resolution on the CPU, so a test suite
can give every (generator, check) pair its own test id and one failing check never hides
the others. genbench's own tests do this for every entry point in ``genbench.generators``
(``tests/test_conformance.py``); a plug-in's tests can call :func:`check_generator`.

``protocol``    the object has the Generator attributes and a dataclass config;
``roles``       every config field declares its role (architecture, training, sampling or
                runtime; see :mod:`genbench.identity`), which decides what a change reruns;
``sample``      ``sample(n)`` is float32 (n, 1, R, R) on the CPU, finite, within [-1, 1];
``determinism`` the same seed gives the same images, another seed different ones;
``fit_loss``    a short fit on a toy set lowers the training loss (first vs last quarter of
                the logged history);
``resume``      a fit interrupted after k steps and resumed from its workdir reaches the same
                weights as an uninterrupted fit (to 1e-6), and fitting changed the weights;
``save_load``   ``save`` -> fresh model -> ``load`` gives identical samples (and the fresh model
                differed before loading, so the check can fail).

Each check raises ``AssertionError`` naming itself and what went wrong.

A plug-in says how to make itself small and fast for these checks with a ``conformance``
mapping on its factory (or on the class whose bound ``factory`` it registers), holding any
:class:`ConformanceSettings` field, e.g. ``{"overrides": {"ch": 8}, "loss_key": "d_loss"}``.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genbench.protocol import FitResult, Generator

__all__ = [
    "ALL_CHECKS",
    "CHECKS",
    "ConformanceSettings",
    "check_generator",
    "conformance_settings",
    "run_check",
    "toy_images",
]


def toy_images(n: int, resolution: int, seed: int = 0) -> torch.Tensor:
    """A learnable toy set: bright discs of random centre and radius on a dark background,
    (n, 1, R, R) float32 in [-1, 1], smooth-edged so small networks can fit it."""
    g = torch.Generator().manual_seed(seed)
    r = resolution
    yy, xx = torch.meshgrid(torch.arange(r) + 0.5, torch.arange(r) + 0.5, indexing="ij")
    cx = r * (0.35 + 0.3 * torch.rand(n, 1, 1, generator=g))
    cy = r * (0.35 + 0.3 * torch.rand(n, 1, 1, generator=g))
    rad = r * (0.15 + 0.15 * torch.rand(n, 1, 1, generator=g))
    d = torch.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    disc = torch.sigmoid((rad - d) / (0.05 * r + 0.5))
    return (disc * 1.6 - 0.8).unsqueeze(1).float()


@dataclass
class ConformanceSettings:
    """How the checks build and exercise a model (a plug-in's ``conformance`` overrides these).

    ``overrides`` make the model tiny (``log_every=1`` is always added, so short fits log);
    ``loss_overrides`` are added for ``fit_loss`` only (e.g. hold a growth schedule still);
    ``loss_key`` names the logged loss that must decrease (default ``"loss"`` if logged, else
    the first key).
    """

    resolution: int = 16
    preset: str = "quick"
    overrides: dict[str, Any] = field(default_factory=dict)
    loss_key: str | None = None
    loss_steps: int = 30
    loss_overrides: dict[str, Any] = field(default_factory=dict)
    fit_steps: int = 6
    interrupt_at: int = 3
    n_train: int = 32
    n_samples: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.interrupt_at < self.fit_steps:
            raise ValueError("need 0 < interrupt_at < fit_steps")


def conformance_settings(factory: Callable[..., Any], **changes: Any) -> ConformanceSettings:
    """The plug-in's declared settings (its factory's or class's ``conformance``), then ``changes``."""
    declared: Any = {}
    for owner in (factory, getattr(factory, "__self__", None)):
        value = getattr(owner, "conformance", None)
        if value is not None:
            declared = value
            break
    if isinstance(declared, ConformanceSettings):
        declared = dataclasses.asdict(declared)
    known = {f.name for f in dataclasses.fields(ConformanceSettings)}
    unknown = sorted(set(declared) - known)
    if unknown:
        raise ValueError(f"conformance settings: unknown keys {unknown}; known: {sorted(known)}")
    values = {**declared, **{k: v for k, v in changes.items() if v is not None}}
    return ConformanceSettings(**values)


class _Context:
    """One check's model factory, toy data and scratch folder."""

    def __init__(self, factory: Callable[..., Generator], settings: ConformanceSettings,
                 tmp: Path) -> None:
        self.factory = factory
        self.s = settings
        self.tmp = tmp
        self.data = toy_images(settings.n_train, settings.resolution, seed=123)

    def make(self, **extra: Any) -> Generator:
        s = self.s
        return self.factory(preset=s.preset, resolution=s.resolution,
                            **{"log_every": 1, **s.overrides, **extra})


def _weights(gen: Generator, path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    gen.save(path)
    return load_file(str(path))


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    assert set(a) == set(b), f"weight names differ: {sorted(set(a) ^ set(b))[:5]}"
    worst, where = 0.0, ""
    for k in a:
        if a[k].dtype.is_floating_point:
            d = (a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0
        else:
            d = 0.0 if torch.equal(a[k], b[k]) else math.inf
        if d > worst:
            worst, where = d, k
    return worst, where


def _loss_series(result: FitResult, key: str | None) -> tuple[str, list[float]]:
    hist = result.history
    if not hist:
        raise AssertionError("fit_loss: the fit logged no history (log more often)")
    keys = [k for k in hist[0] if k != "step"]
    if key is None:
        key = "loss" if "loss" in keys else (keys[0] if keys else "")
    series = [float(h[key]) for h in hist if key in h]
    return key, series


# --------------------------------------------------------------------------- the checks


def check_protocol(ctx: _Context) -> str:
    gen = ctx.make()
    assert isinstance(gen, Generator), "protocol: object lacks Generator methods"
    assert isinstance(gen.name, str) and gen.name, "protocol: name must be a non-empty string"
    assert dataclasses.is_dataclass(gen.config), "protocol: config must be a dataclass"
    assert gen.num_parameters() > 0, "protocol: num_parameters() must be positive"
    return f"{gen.name}: {gen.num_parameters()} parameters"


def check_roles(ctx: _Context) -> str:
    from genbench.identity import ROLES, missing_roles

    gen = ctx.make()
    cfg = gen.config
    assert dataclasses.is_dataclass(cfg), "roles: config must be a dataclass"
    missing = missing_roles(cfg)
    assert not missing, (
        f"roles: {type(cfg).__name__} field(s) {', '.join(missing)} declare no role; add "
        f"field(..., metadata={{'role': ...}}) with one of {', '.join(ROLES)}"
    )
    counts = {r: sum(f.metadata["role"] == r for f in dataclasses.fields(cfg)) for r in ROLES}
    return ", ".join(f"{n} {r}" for r, n in counts.items())


def check_sample(ctx: _Context) -> str:
    gen, n, r = ctx.make(), ctx.s.n_samples, ctx.s.resolution
    x = gen.sample(n, seed=0)
    want = (n, 1, r, r)
    assert isinstance(x, torch.Tensor), "sample: must return a torch.Tensor"
    assert tuple(x.shape) == want, f"sample: shape {tuple(x.shape)}, expected {want}"
    assert x.dtype == torch.float32, f"sample: dtype {x.dtype}, expected float32"
    assert x.device.type == "cpu", f"sample: returned on {x.device}, expected cpu"
    assert torch.isfinite(x).all(), "sample: non-finite values"
    assert x.min() >= -1 and x.max() <= 1, (
        f"sample: values in [{x.min():.3f}, {x.max():.3f}], expected within [-1, 1]"
    )
    odd = gen.sample(3, seed=0, batch_size=2)
    assert tuple(odd.shape) == (3, 1, r, r), (
        "sample: n not a multiple of batch_size gave the wrong count"
    )
    return f"shape {want}, range [{x.min():.2f}, {x.max():.2f}]"


def check_determinism(ctx: _Context) -> str:
    gen, n = ctx.make(), ctx.s.n_samples
    a = gen.sample(n, seed=7)
    b = gen.sample(n, seed=7)
    c = gen.sample(n, seed=8)
    assert torch.equal(a, b), "determinism: same seed gave different samples"
    assert not torch.equal(a, c), "determinism: different seeds gave identical samples"
    return "same seed equal, other seed differs"


def check_fit_loss(ctx: _Context) -> str:
    s = ctx.s
    res = ctx.make(**s.loss_overrides).fit(ctx.data, steps=s.loss_steps, seed=1)
    key, series = _loss_series(res, s.loss_key)
    assert len(series) >= 4, f"fit_loss: only {len(series)} logged values of {key!r}"
    q = max(1, len(series) // 4)
    head, tail = sum(series[:q]) / q, sum(series[-q:]) / q
    assert all(math.isfinite(v) for v in series), f"fit_loss: non-finite {key}"
    assert tail < head, f"fit_loss: {key} did not decrease ({head:.4g} -> {tail:.4g})"
    return f"{key}: {head:.4g} -> {tail:.4g} in {s.loss_steps} steps"


def check_resume(ctx: _Context) -> str:
    s, tmp = ctx.s, ctx.tmp
    full = ctx.make()
    res_full = full.fit(ctx.data, workdir=tmp / "full", steps=s.fit_steps, seed=3)
    assert res_full.steps == s.fit_steps, f"resume: fit reported {res_full.steps} steps"
    part = ctx.make()
    res_a = part.fit(ctx.data, workdir=tmp / "part", steps=s.interrupt_at, seed=3)
    assert res_a.steps == s.interrupt_at and res_a.resumed_from is None, (
        f"resume: a first fit to {s.interrupt_at} steps reported {res_a.steps} steps, "
        f"resumed_from={res_a.resumed_from}"
    )
    again = ctx.make()
    res_b = again.fit(ctx.data, workdir=tmp / "part", steps=s.fit_steps, seed=3)
    assert res_b.resumed_from == s.interrupt_at, (
        f"resume: second fit resumed from {res_b.resumed_from}, expected {s.interrupt_at}"
    )
    w_full = _weights(full, tmp / "full.safetensors")
    w_res = _weights(again, tmp / "resumed.safetensors")
    diff, where = _max_diff(w_full, w_res)
    assert diff <= 1e-6, f"resume: weights differ by {diff:.3g} at {where}"
    moved, _ = _max_diff(w_full, _weights(ctx.make(), tmp / "init.safetensors"))
    assert moved > 0, "resume: fitting did not change any weight"
    return (f"max weight difference {diff:.1e} after {s.interrupt_at}+"
            f"{s.fit_steps - s.interrupt_at} steps")


def check_save_load(ctx: _Context) -> str:
    n = ctx.s.n_samples
    fitted = ctx.make()
    fitted.fit(ctx.data, steps=2, seed=3)
    path = ctx.tmp / "weights.safetensors"
    fitted.save(path)
    fresh = ctx.make()
    before = fresh.sample(n, seed=5)
    want = fitted.sample(n, seed=5)
    assert not torch.equal(before, want), (
        "save_load: an unfitted model samples like the fitted one; cannot test loading"
    )
    fresh.load(path)
    got = fresh.sample(n, seed=5)
    assert torch.equal(got, want), (
        f"save_load: samples differ after load (max {(got - want).abs().max():.2e})"
    )
    return "identical samples after save -> load"


CHECKS: dict[str, Callable[[_Context], str]] = {
    "protocol": check_protocol,
    "roles": check_roles,
    "sample": check_sample,
    "determinism": check_determinism,
    "fit_loss": check_fit_loss,
    "resume": check_resume,
    "save_load": check_save_load,
}
ALL_CHECKS = tuple(CHECKS)


def run_check(factory: Callable[..., Generator], check: str,
              settings: ConformanceSettings | None = None, tmp_dir: Path | None = None) -> str:
    """Run one named check on a fresh model; returns its one-line summary."""
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}; known: {ALL_CHECKS}")
    settings = settings or conformance_settings(factory)
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp_name:
        return CHECKS[check](_Context(factory, settings, Path(tmp_name)))


def check_generator(
    factory: Callable[..., Generator],
    *,
    checks: Iterable[str] | None = None,
    tmp_dir: Path | None = None,
    **settings: Any,
) -> dict[str, str]:
    """Run the conformance checks on ``factory``; returns ``{check: short summary}``.

    ``settings`` are :class:`ConformanceSettings` fields that replace the plug-in's declared
    ones (e.g. ``resolution=16, overrides={...}, loss_key="d_loss"``). Stops at the first
    failing check; a test suite that wants each check reported separately calls
    :func:`run_check` once per check.
    """
    selected = tuple(checks) if checks is not None else ALL_CHECKS
    unknown = set(selected) - set(ALL_CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {ALL_CHECKS}")
    resolved = conformance_settings(factory, **settings)
    return {c: run_check(factory, c, resolved, tmp_dir) for c in selected}
