"""Stage identity from field roles: which keys a changed value of each role moves."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from genbench import identity
from genbench.generator_base import BaseConfig
from genbench.training import EngineConfig


@dataclass
class Cfg(BaseConfig):
    # the literal metadata form a plug-in author writes (README "Your own model")
    width: int = field(default=8, metadata={"role": "architecture"})
    beta1: float = field(default=0.5, metadata={"role": "training"})
    truncation: float = field(default=1.0, metadata={"role": "sampling"})
    verbose: bool = field(default=False, metadata={"role": "runtime"})


def _keys(cfg: Cfg) -> tuple[str, str]:
    train = identity.train_key("m", cfg, data="d", seed=0)
    sample = identity.sample_key(cfg, weights="w", n=10, seed=0, chunk=256)
    return train, sample


@pytest.mark.parametrize("name, value, moves_train, moves_sample", [
    ("width", 16, True, False),         # architecture: the weights (hence samples) change too
    ("resolution", 64, True, False),
    ("beta1", 0.9, True, False),        # training
    ("steps", 7, True, False),
    ("truncation", 0.7, False, True),   # sampling
    ("sample_batch_size", 3, False, True),
    ("verbose", True, False, False),    # runtime
    ("device", "cpu", False, False),
    ("checkpoint_every", 1, False, False),
])
def test_each_role_moves_its_own_keys(name, value, moves_train, moves_sample):
    base = _keys(Cfg())
    changed = _keys(dataclasses.replace(Cfg(), **{name: value}))
    assert (changed[0] != base[0], changed[1] != base[1]) == (moves_train, moves_sample)


def test_every_base_and_engine_field_declares_a_role():
    assert identity.missing_roles(BaseConfig) == []
    assert identity.missing_roles(EngineConfig) == []
    assert identity.missing_roles(Cfg) == []


def test_checkpoint_identity_is_architecture_and_training():
    ident = identity.checkpoint_identity("m", Cfg())
    assert ident["model"] == "m" and {"width", "beta1", "steps", "lr", "resolution"} <= set(ident)
    assert not {"truncation", "verbose", "device", "sample_batch_size", "log_every"} & set(ident)
    assert ident == identity.checkpoint_identity("m", Cfg(truncation=0.1, device="cpu"))


def test_engine_identity_leaves_the_target_steps_out():
    a = identity.engine_identity(EngineConfig(steps=3, batch_size=2, seed=1))
    assert a == identity.engine_identity(EngineConfig(steps=9, batch_size=2, seed=1, log_every=1))
    assert a != identity.engine_identity(EngineConfig(steps=3, batch_size=4, seed=1))
    assert a == {"batch_size": 2, "seed": 1, "mixed_precision": "no"}


def test_missing_and_unknown_roles():
    @dataclass
    class Half(BaseConfig):
        knob: int = 1
        other: int = field(default=2, metadata={"role": "sampling"})

    assert identity.missing_roles(Half) == ["knob"]
    # read safely until declared: a change trains anew (never silently reuses weights)
    assert identity.field_roles(Half())["knob"] == "training"

    @dataclass
    class Typo(BaseConfig):
        knob: int = field(default=1, metadata={"role": "sampler"})

    assert identity.missing_roles(Typo) == ["knob"]
    with pytest.raises(ValueError, match="unknown role 'sampler'"):
        identity.field_roles(Typo())


def test_legacy_class_lists_still_read_until_roles_are_declared():
    @dataclass
    class Old(BaseConfig):
        ch: int = 4
        sample_steps: int = 10

    class Owner:
        architecture_keys = ("ch",)
        resume_ignores = ("sample_steps",)

    roles = identity.field_roles(Old(), Owner)
    assert roles["ch"] == "architecture" and roles["sample_steps"] == "sampling"
