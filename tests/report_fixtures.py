"""Hand-made results.json / metrics.json objects for the report, table and check tests."""

from __future__ import annotations

from typing import Any


def metric(value: float | None, std: float | None = None, status: str = "ok", **extra: Any) -> dict:
    out = {
        "value": value,
        "std": std,
        "status": status if value is not None or status != "ok" else "unavailable",
        "reason": None if value is not None else "Inception weights not found",
        "params": {},
        "elapsed_s": 0.1,
        "n_real": 20,
        "n_synth": 20,
    }
    out.update(extra)
    return out


def metrics_json(**values: Any) -> dict:
    """``fid=12.0`` or ``fid=(12.0, 0.5)`` or ``fid=None`` (unavailable)."""
    ms = {}
    for name, v in values.items():
        if isinstance(v, tuple):
            ms[name] = metric(*v)
        else:
            ms[name] = metric(v)
    return {
        "genbench_version": "0.1.0",
        "real": {"path": "real", "n": 20, "sha256": "a" * 64},
        "synth": {"path": "synth", "n": 20, "sha256": "b" * 64},
        "metrics": ms,
        "floor": None,
    }


def results_json(dataset: str, models: dict[str, dict], floor: dict | None = None,
                 preset: str = "quick") -> dict:
    return {
        "schema": "genbench.results/1",
        "genbench_version": "0.1.0",
        "dataset": dataset,
        "preset": preset,
        "data": {"name": dataset, "fingerprint": "f" * 16},
        "settings": {},
        "versions": {},
        "models": {m: {"metrics": mj, "config": {"lr": 1e-4}} for m, mj in models.items()},
        "floor": floor,
    }


def two_datasets() -> list[dict]:
    pelvic = results_json(
        "pelvic",
        {
            "ddpm": metrics_json(**{"is": (2.5, 0.1)}, fid=40.0, fds=(0.5, 0.1), ds=0.30),
            "wgan-gp": metrics_json(**{"is": (3.0, 0.2)}, fid=80.0, fds=(0.9, 0.2), ds=0.20),
            "mt-ddpm": metrics_json(**{"is": (2.9, 0.1)}, fid=35.5, fds=(0.7, 0.05), ds=0.45),
        },
        floor=metrics_json(fid=5.0, fds=(0.01, 0.0), ds=0.01),
    )
    chest = results_json(
        "chest",
        {
            "ddpm": metrics_json(**{"is": None}, fid=50.0, fds=(0.4, 0.1), ds=0.10),
            "wgan-gp": metrics_json(fid=50.004, fds=(0.3, 0.1), ds=None),
            "mt-ddpm": metrics_json(fid=60.0, fds=(0.2, 0.1), ds=0.15),
        },
        floor=metrics_json(fid=3.0, fds=(0.02, 0.0), ds=0.02),
    )
    return [pelvic, chest]
