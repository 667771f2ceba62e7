"""Conformance of every installed generator, one test id per (generator, check); and for each
check a deliberately broken generator that this check, and only this check, rejects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from genbench.generator_base import BaseConfig, BaseGenerator, role
from genbench.protocol import available_generators, get_factory
from genbench.testing import ALL_CHECKS, conformance_settings, run_check
from genbench.training import Engine, TrainingTask

pytestmark = pytest.mark.usefixtures("one_thread")


def _installed_cases() -> list[Any]:
    cases = []
    for name in available_generators():
        for check in ALL_CHECKS:
            cases.append(pytest.param(name, check, id=f"{name}-{check}"))
    return cases


@pytest.mark.parametrize("name, check", _installed_cases())
def test_installed_generator(name, check, tmp_path):
    run_check(get_factory(name), check, tmp_dir=tmp_path)


def test_every_registered_baseline_is_covered():
    names = set(available_generators())
    assert {"wgan-gp", "pggan", "stylegan", "ddpm", "mt-ddpm"} <= names


# --------------------------------------------------------------------------- a toy generator


@dataclass
class ToyConfig(BaseConfig):
    width: int = field(default=4, metadata=role("architecture"))
    lr_decay: float = field(default=0.2, metadata=role("training"))
    noise: float = field(default=1.0, metadata=role("sampling"))


class ToyNet(nn.Module):
    """``tanh(mean + conv2(relu(conv1(z))))``: a learnable mean image plus shaped noise."""

    def __init__(self, resolution: int, width: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, 1, resolution, resolution))
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean + self.conv2(torch.relu(self.conv1(z))))


class ToyTask(TrainingTask):
    maximize = False

    def __init__(self, model: Toy) -> None:
        self.model = model

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.model.net}

    def build_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"net": torch.optim.Adam(modules["net"].parameters(), lr=self.model.config.lr,
                                        maximize=self.maximize)}

    def step_lr(self, step: int) -> float:
        # a decaying learning rate: resuming must restore the schedule's position exactly
        return self.model.config.lr / (1.0 + self.model.config.lr_decay * step)

    def train_step(self, batch: torch.Tensor, step: int, engine: Engine) -> dict[str, float]:
        opt = engine.optimizer("net")
        for group in opt.param_groups:
            group["lr"] = self.step_lr(step)
        z = torch.randn_like(batch)
        loss = ((engine.module("net")(z) - batch) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        engine.backward(loss)
        opt.step()
        return {"loss": loss.item()}


class Toy(BaseGenerator):
    name = "toy"
    config_class = ToyConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"resolution": 16, "lr": 0.05,
                                                              "batch_size": 8}}
    conformance: ClassVar[dict[str, Any]] = {"overrides": {"checkpoint_every": 0}}
    task_class: ClassVar[type[ToyTask]] = ToyTask

    def build(self) -> None:
        self.net = ToyNet(self.config.resolution, self.config.width)

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def make_task(self) -> TrainingTask:
        return self.task_class(self)

    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        r = self.config.resolution
        z = torch.randn(n, 1, r, r, generator=generator) * self.config.noise
        return self.net(z.to(self.device))


# --------------------------------------------------------------------------- one fault per check


class NoParameters(Toy):
    def num_parameters(self) -> int:
        return 0  # protocol: a model must report its size


@dataclass
class UndeclaredConfig(ToyConfig):
    extra_knob: int = 3  # roles: no role declared


class Undeclared(Toy):
    config_class = UndeclaredConfig


class OutOfRange(Toy):
    def sample(self, n: int, *, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
        return super().sample(n, seed=seed, batch_size=batch_size) * 3  # sample: beyond [-1, 1]


class SeedBlind(Toy):
    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # determinism: ignores the caller's generator, so every seed gives the same images
        return super().generate(n, torch.Generator().manual_seed(0))


class AscendingTask(ToyTask):
    maximize = True  # fit_loss: the optimizer climbs the loss (weights still change)


class Ascending(Toy):
    task_class = AscendingTask


class ForgetfulTask(ToyTask):
    # resume: keeps the schedule's position in its own counter and never checkpoints it, so a
    # resumed fit restarts the learning-rate decay and ends on different weights
    def __init__(self, model: Toy) -> None:
        super().__init__(model)
        self.calls = 0

    def step_lr(self, step: int) -> float:
        self.calls += 1
        return super().step_lr(self.calls - 1)


class Forgetful(Toy):
    task_class = ForgetfulTask


class LoadsNothing(Toy):
    def load(self, path: Any) -> None:
        pass  # save_load: silently keeps its own weights


class IgnoresWeights(Toy):
    def generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # save_load's guard: samples that do not depend on the weights cannot show a load
        r = self.config.resolution
        return torch.tanh(torch.randn(n, 1, r, r, generator=generator)).to(self.device)


FAULTS = [
    pytest.param(NoParameters, "protocol", "num_parameters", id="protocol"),
    pytest.param(Undeclared, "roles", "extra_knob declare no role", id="roles"),
    pytest.param(OutOfRange, "sample", "expected within", id="sample"),
    pytest.param(SeedBlind, "determinism", "different seeds gave identical", id="determinism"),
    pytest.param(Ascending, "fit_loss", "did not decrease", id="fit_loss"),
    pytest.param(Forgetful, "resume", "weights differ", id="resume-weights"),
    pytest.param(LoadsNothing, "save_load", "samples differ after load", id="save_load"),
    pytest.param(IgnoresWeights, "save_load", "cannot test loading", id="save_load-guard"),
]


def _failures(cls: type[Toy], tmp_path) -> dict[str, str]:
    failed = {}
    for check in ALL_CHECKS:
        try:
            run_check(cls.factory, check, tmp_dir=tmp_path)
        except AssertionError as exc:
            failed[check] = str(exc)
    return failed


def test_the_toy_passes_every_check(tmp_path):
    assert _failures(Toy, tmp_path) == {}


def test_every_check_has_a_fault():
    assert {p.values[1] for p in FAULTS} == set(ALL_CHECKS)


@pytest.mark.parametrize("cls, check, message", FAULTS)
def test_fault_is_caught_by_its_check_only(cls, check, message, tmp_path):
    failed = _failures(cls, tmp_path)
    assert set(failed) == {check}, failed
    assert message in failed[check]


def test_declared_settings_are_read_and_checked():
    s = conformance_settings(get_factory("pggan"))
    assert s.loss_key == "loss_d" and s.loss_overrides == {"phase_images": 10**9}
    assert conformance_settings(Toy.factory, loss_steps=7).loss_steps == 7

    class Typo(Toy):
        conformance: ClassVar[dict[str, Any]] = {"loss_stepz": 3}

    with pytest.raises(ValueError, match="loss_stepz"):
        conformance_settings(Typo.factory)
