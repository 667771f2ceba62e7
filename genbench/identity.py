"""What each stage of a run depends on, derived from the role every config field declares.

Every field of a model's config (and of :class:`genbench.training.EngineConfig`) declares one
role in standard dataclass metadata::

    lr: float = field(default=2e-4, metadata={"role": "training"})

``architecture``  what the networks are (shapes, parametrisation): changing it trains anew,
                  and weights saved under another value are refused on load;
``training``      how they are trained (optimiser, losses, schedule, length): trains anew;
``sampling``      how images are drawn from trained weights (sampler, its steps, batching that
                  changes the random draws): re-samples and re-evaluates, never retrains;
``runtime``       where and how visibly things run (device, logging, checkpoint cadence):
                  changes nothing that is computed, so it reruns nothing.

This module is the only place that turns roles into identities; the runner's stage keys, the
folder a training's checkpoints live in, the engine's resume check and the load-time
architecture check all call it, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from genbench.stages import content_key

__all__ = [
    "ROLES",
    "checkpoint_identity",
    "config_values",
    "engine_identity",
    "evaluate_key",
    "field_roles",
    "floor_key",
    "missing_roles",
    "sample_key",
    "train_key",
]

ROLES = ("architecture", "training", "sampling", "runtime")
# The roles whose values decide what a training produces: together, a training's identity.
TRAINED_BY = ("architecture", "training")


def _fields(config: Any) -> tuple[dataclasses.Field, ...]:
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{config!r} is not a dataclass (instance or class)")
    return dataclasses.fields(config)


def _legacy_role(name: str, owner: Any) -> str | None:
    # Transitional: a model that still lists ``architecture_keys`` / ``resume_ignores`` on its
    # class instead of declaring field roles keeps its old behaviour (the conformance check
    # ``roles`` still fails it). Drop this once every installed model declares roles.
    if owner is None:
        return None
    if name in getattr(owner, "architecture_keys", ()):
        return "architecture"
    if name in getattr(owner, "resume_ignores", ()):
        return "sampling"
    return None


def missing_roles(config: Any) -> list[str]:
    """Fields of ``config`` (a dataclass or its class) that declare no valid role."""
    return [f.name for f in _fields(config) if f.metadata.get("role") not in ROLES]


def field_roles(config: Any, owner: Any = None) -> dict[str, str]:
    """``{field name: role}`` for a config dataclass (instance or class).

    A field without a declared role counts as ``training`` -- the safe reading: changing it
    trains anew (into a new folder; nothing is deleted) -- unless ``owner`` (the generator)
    still lists it in the legacy class attributes.
    """
    out = {}
    for f in _fields(config):
        role = f.metadata.get("role")
        if role is not None and role not in ROLES:
            raise ValueError(f"{type(config).__name__}.{f.name}: unknown role {role!r}; "
                             f"use one of {', '.join(ROLES)}")
        out[f.name] = role or _legacy_role(f.name, owner) or "training"
    return out


def _plain(value: Any) -> Any:
    # Tuples and lists, paths and strings: the JSON form, so a value read back from a saved
    # config (lists) equals the one built in memory (tuples).
    return json.loads(json.dumps(value, default=str))


def config_values(config: Any, roles: tuple[str, ...], owner: Any = None) -> dict[str, Any]:
    """The values of ``config``'s fields whose role is in ``roles`` (JSON-plain, sorted)."""
    roles_of = field_roles(config, owner)
    return {name: _plain(getattr(config, name)) for name in sorted(roles_of)
            if roles_of[name] in roles}


def checkpoint_identity(model: str, config: Any, owner: Any = None) -> dict[str, Any]:
    """What a checkpoint must have been trained with to be resumed: the model name and every
    architecture and training value. Sampling and runtime values may change between runs."""
    return {"model": model, **config_values(config, TRAINED_BY, owner)}


def engine_identity(config: Any) -> dict[str, Any]:
    """The engine's own training values a resumed checkpoint must share.

    ``steps`` is left out on purpose: for the engine it is the target of this call, so a fit
    to more steps continues a shorter one from its checkpoint (the model's configured
    ``steps`` is part of :func:`checkpoint_identity` instead)."""
    values = config_values(config, ("training",))
    values.pop("steps", None)
    return values


def train_key(model: str, config: Any, *, data: str, seed: int, owner: Any = None) -> str:
    """The train stage's key, which also names the folder its checkpoints live in."""
    return content_key(stage="train", identity=checkpoint_identity(model, config, owner),
                       data=data, seed=seed)


def sample_key(config: Any, *, weights: str, n: int, seed: int, owner: Any = None,
               **layout: Any) -> str:
    """The sample stage's key: the trained weights' hash, the sampling values, the count and
    seed, and how the samples are laid out on disk (``layout``: chunking, bit depth)."""
    return content_key(stage="sample", weights=weights,
                       sampling=config_values(config, ("sampling",), owner), n=n, seed=seed,
                       layout=layout)


def evaluate_key(*, samples: str, real: str, evaluation: dict[str, Any], train: str | None = None) -> str:
    """The evaluate stage's key: the samples' hash, the real set's hash, the training set's hash
    (``mem`` compares the samples with it) and the evaluation settings that change values
    (metrics, weights hash, seeds; never device or cache paths)."""
    return content_key(stage="evaluate", samples=samples, real=real, train=train, eval=evaluation)


def floor_key(*, data: str, real: str, evaluation: dict[str, Any], train: str | None = None) -> str:
    """The real-vs-real floor's key: the data set, the held-out and training sets' hashes (the
    floor's second real sample is drawn from the training set) and the evaluation settings."""
    return content_key(stage="floor", data=data, test=real, train=train, eval=evaluation)
