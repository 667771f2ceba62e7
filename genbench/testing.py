"""The Generator conformance suite: one call that every registered model's tests make.

Like scikit-learn's ``check_estimator``: :func:`check_generator` builds the model from its
factory at a small resolution and checks the protocol's promises on the CPU:

``protocol``    the object has the Generator attributes and a dataclass config;
``sample``      ``sample(n)`` is float32 (n, 1, R, R), finite, within [-1, 1];
``determinism`` the same seed gives the same images, another seed different ones;
``fit_loss``    a short fit on a toy set lowers the training loss (first vs last quarter of
                the logged history);
``resume``      a fit interrupted after k steps and resumed from its workdir reaches the same
                weights as an uninterrupted fit (to 1e-6);
``save_load``   ``save`` -> fresh model -> ``load`` gives identical samples (and the fresh model
                differed before loading, so the check can fail).

Each check raises ``AssertionError`` naming itself and what went wrong.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from genbench.protocol import FitResult, Generator

__all__ = ["ALL_CHECKS", "check_generator", "toy_images"]

ALL_CHECKS = ("protocol", "sample", "determinism", "fit_loss", "resume", "save_load")


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


def check_generator(
    factory: Callable[..., Generator],
    *,
    resolution: int = 16,
    preset: str = "quick",
    overrides: dict[str, Any] | None = None,
    fit_steps: int = 6,
    interrupt_at: int = 3,
    loss_steps: int = 30,
    loss_key: str | None = None,
    n_train: int = 32,
    n_samples: int = 4,
    tmp_dir: Path | None = None,
    checks: Iterable[str] | None = None,
) -> dict[str, str]:
    """Run the conformance checks on ``factory(preset=preset, resolution=resolution, **overrides)``.

    ``overrides`` should make the model tiny and log every step (e.g. ``log_every=1``).
    ``loss_key`` names the history entry whose decrease ``fit_loss`` checks (default ``"loss"``
    if logged, else the first key). Returns ``{check: short summary}`` for the checks run.
    """
    overrides = dict(overrides or {})
    selected = tuple(checks) if checks is not None else ALL_CHECKS
    unknown = set(selected) - set(ALL_CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {ALL_CHECKS}")
    if not 0 < interrupt_at < fit_steps:
        raise ValueError("need 0 < interrupt_at < fit_steps")
    report: dict[str, str] = {}

    def make() -> Generator:
        return factory(preset=preset, resolution=resolution, **overrides)

    data = toy_images(n_train, resolution, seed=123)
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        gen = make()

        if "protocol" in selected:
            assert isinstance(gen, Generator), "protocol: object lacks Generator methods"
            assert isinstance(gen.name, str) and gen.name, "protocol: name must be a string"
            assert dataclasses.is_dataclass(gen.config), "protocol: config must be a dataclass"
            assert gen.num_parameters() > 0, "protocol: num_parameters() must be positive"
            report["protocol"] = f"{gen.name}: {gen.num_parameters()} parameters"

        if "sample" in selected:
            x = gen.sample(n_samples, seed=0)
            want = (n_samples, 1, resolution, resolution)
            assert isinstance(x, torch.Tensor), "sample: must return a torch.Tensor"
            assert tuple(x.shape) == want, f"sample: shape {tuple(x.shape)}, expected {want}"
            assert x.dtype == torch.float32, f"sample: dtype {x.dtype}, expected float32"
            assert x.device.type == "cpu", f"sample: returned on {x.device}, expected cpu"
            assert torch.isfinite(x).all(), "sample: non-finite values"
            assert x.min() >= -1 and x.max() <= 1, (
                f"sample: values in [{x.min():.3f}, {x.max():.3f}], expected within [-1, 1]"
            )
            odd = gen.sample(3, seed=0, batch_size=2)
            assert tuple(odd.shape) == (3, 1, resolution, resolution), (
                "sample: n not a multiple of batch_size gave the wrong count"
            )
            report["sample"] = f"shape {want}, range [{x.min():.2f}, {x.max():.2f}]"

        if "determinism" in selected:
            a = gen.sample(n_samples, seed=7)
            b = gen.sample(n_samples, seed=7)
            c = gen.sample(n_samples, seed=8)
            assert torch.equal(a, b), "determinism: same seed gave different samples"
            assert not torch.equal(a, c), "determinism: different seeds gave identical samples"
            report["determinism"] = "same seed equal, other seed differs"

        if "fit_loss" in selected:
            g = make()
            res = g.fit(data, steps=loss_steps, seed=1)
            key, series = _loss_series(res, loss_key)
            assert len(series) >= 4, f"fit_loss: only {len(series)} logged values of {key!r}"
            q = max(1, len(series) // 4)
            head, tail = sum(series[:q]) / q, sum(series[-q:]) / q
            assert all(math.isfinite(v) for v in series), f"fit_loss: non-finite {key}"
            assert tail < head, f"fit_loss: {key} did not decrease ({head:.4g} -> {tail:.4g})"
            report["fit_loss"] = f"{key}: {head:.4g} -> {tail:.4g} in {loss_steps} steps"

        fitted: Generator | None = None
        if "resume" in selected:
            full = make()
            res_full = full.fit(data, workdir=tmp / "full", steps=fit_steps, seed=3)
            assert res_full.steps == fit_steps, f"resume: fit reported {res_full.steps} steps"
            part = make()
            res_a = part.fit(data, workdir=tmp / "part", steps=interrupt_at, seed=3)
            assert res_a.steps == interrupt_at and res_a.resumed_from is None
            again = make()
            res_b = again.fit(data, workdir=tmp / "part", steps=fit_steps, seed=3)
            assert res_b.resumed_from == interrupt_at, (
                f"resume: second fit resumed from {res_b.resumed_from}, expected {interrupt_at}"
            )
            w_full = _weights(full, tmp / "full.safetensors")
            w_res = _weights(again, tmp / "resumed.safetensors")
            diff, where = _max_diff(w_full, w_res)
            assert diff <= 1e-6, f"resume: weights differ by {diff:.3g} at {where}"
            w_init = _weights(make(), tmp / "init.safetensors")
            moved, _ = _max_diff(w_full, w_init)
            assert moved > 0, "resume: fitting did not change any weight"
            report["resume"] = f"max weight difference {diff:.1e} after {interrupt_at}+{fit_steps - interrupt_at} steps"
            fitted = full

        if "save_load" in selected:
            if fitted is None:
                fitted = make()
                fitted.fit(data, steps=2, seed=3)
            path = tmp / "weights.safetensors"
            fitted.save(path)
            fresh = make()
            before = fresh.sample(n_samples, seed=5)
            want = fitted.sample(n_samples, seed=5)
            assert not torch.equal(before, want), (
                "save_load: an unfitted model samples like the fitted one; cannot test loading"
            )
            fresh.load(path)
            got = fresh.sample(n_samples, seed=5)
            assert torch.equal(got, want), (
                f"save_load: samples differ after load (max {(got - want).abs().max():.2e})"
            )
            report["save_load"] = "identical samples after save -> load"
    return report
