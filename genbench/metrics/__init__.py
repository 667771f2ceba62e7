"""Metrics: one module per metric, a common result type, and the pipeline that runs them all.

Attributes are imported lazily so that ``genbench.metrics.result`` (imported by every metric
module) does not pull in torch-fidelity, openTSNE or the pipeline.
"""

from __future__ import annotations

from typing import Any

from genbench.metrics.registry import REGISTRY, MetricSpec
from genbench.metrics.result import MetricResult

__all__ = [
    "EvalOptions",
    "EvalReport",
    "InceptionFeatureExtractor",
    "MetricContext",
    "MetricResult",
    "MetricSpec",
    "PreparedReal",
    "REGISTRY",
    "compute_inception_metrics",
    "evaluate",
    "floor",
    "parse_metric_names",
    "resolve_inception_weights",
]

_LAZY = {
    "EvalOptions": "genbench.metrics.pipeline",
    "EvalReport": "genbench.metrics.pipeline",
    "evaluate": "genbench.metrics.pipeline",
    "MetricContext": "genbench.metrics.pipeline",
    "PreparedReal": "genbench.metrics.pipeline",
    "floor": "genbench.metrics.pipeline",
    "parse_metric_names": "genbench.metrics.pipeline",
    "compute_inception_metrics": "genbench.metrics.fidelity",
    "InceptionFeatureExtractor": "genbench.metrics.inception",
    "resolve_inception_weights": "genbench.metrics.inception",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'genbench.metrics' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
