"""The one result type every metric returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "unavailable", "failed"]

@dataclass
class MetricResult:
    """One metric's value with everything needed to cite or reproduce it.

    ``extra`` holds per-image or per-point arrays (nearest-SSIMs, t-SNE coordinates) that
    figures use; only the keys listed in ``json_extra`` are written to JSON.
    """

    name: str
    value: float | None
    std: float | None = None
    ci: tuple[float, float] | None = None  # confidence interval at params["ci_level"]
    ci_method: str | None = None  # how the interval was obtained (bootstrap over images, seeds, exact...)
    status: Status = "ok"
    reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    n_real: int | None = None
    n_synth: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    json_extra: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": None if self.value is None else float(self.value),
            "std": None if self.std is None else float(self.std),
            "ci": None if self.ci is None else [float(self.ci[0]), float(self.ci[1])],
            "ci_method": self.ci_method,
            "ci_level": self.params.get("ci_level") if self.ci is not None else None,
            "status": self.status,
            "reason": self.reason,
            "params": self.params,
            "elapsed_s": round(float(self.elapsed_s), 4),
            "n_real": self.n_real,
            "n_synth": self.n_synth,
        }
        for key in self.json_extra:
            val = self.extra.get(key)
            # non-finite replicates (a degenerate resample) are written as null, valid JSON
            out[key] = None if val is None else [float(v) if math.isfinite(v) else None for v in val]
        return out

    @classmethod
    def unavailable(cls, name: str, reason: str, **params: Any) -> "MetricResult":
        return cls(name=name, value=None, status="unavailable", reason=reason, params=params)

    @classmethod
    def failed(cls, name: str, reason: str, **params: Any) -> "MetricResult":
        return cls(name=name, value=None, status="failed", reason=reason, params=params)
