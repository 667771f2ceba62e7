"""The metric registry: the one list of metrics genbench knows.

Every command, table, threshold file, report and the README's metric list reads this module.
A metric is one :class:`MetricSpec` (declared below, in display order) plus the module that
computes it; see ``docs/adding-a-metric.md``. Nothing else in the code lists metric names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from genbench.errors import UsageError

if TYPE_CHECKING:
    from genbench.metrics.pipeline import MetricContext
    from genbench.metrics.result import MetricResult

__all__ = ["FAMILIES", "REGISTRY", "MetricRegistry", "MetricSpec"]

# What a metric needs beyond two image sets, and the one-line reason a whole family can be missing.
FAMILIES: dict[str, str] = {
    "inception": "Inception-v3 features (weights file supplied by the user)",
    "pixels": "the images themselves",
    "train": "the generator's training set",
    "labels": "class labels",
    "backbone": "a feature backbone whose weights the user supplies",
    "radiomics": "radiomic features (pyradiomics)",
}


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is named, read, computed and tabulated.

    ``compute`` is ``"module:function"``, imported only when the metric is computed, taking a
    :class:`~genbench.metrics.pipeline.MetricContext` and returning a ``MetricResult``.
    ``groups`` are extra ``--metrics`` names that select several metrics at once (``prc``).
    """

    name: str
    title: str
    direction: int
    family: str
    compute: str
    description: str
    aliases: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    default: bool = True
    digits: int = 3
    # True: every rank of a torchrun job runs ``compute``, which divides its work with
    # ``ctx.dist`` (genbench.distributed); False: rank 0 alone computes the metric.
    distributed: bool = False

    def __post_init__(self) -> None:
        if self.direction not in (-1, 1):
            raise ValueError(f"metric {self.name!r}: direction must be +1 or -1")
        if self.family not in FAMILIES:
            raise ValueError(f"metric {self.name!r}: unknown family {self.family!r}")
        if ":" not in self.compute:
            raise ValueError(f"metric {self.name!r}: compute must be 'module:function'")

    @property
    def arrow(self) -> str:
        return "↑" if self.direction > 0 else "↓"

    def load(self) -> Callable[[MetricContext], MetricResult]:
        module, func = self.compute.split(":")
        return getattr(importlib.import_module(module), func)


class MetricRegistry:
    """Ordered metric specs plus name resolution for ``--metrics``."""

    def __init__(self) -> None:
        self._specs: dict[str, MetricSpec] = {}

    def register(self, spec: MetricSpec) -> MetricSpec:
        taken = self.selectors()
        clash = [n for n in (spec.name, *spec.aliases) if n in taken or n == "all"]
        if clash or spec.name in self._specs:
            raise ValueError(f"metric name or alias already registered: {clash or [spec.name]}")
        self._specs[spec.name] = spec
        return spec

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __getitem__(self, name: str) -> MetricSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UsageError(f"unknown metric {name!r}; known: {', '.join(self._specs)}") from None

    def get(self, name: str) -> MetricSpec | None:
        return self._specs.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def default_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self if s.default)

    def direction(self, name: str, default: int = -1) -> int:
        spec = self._specs.get(name)
        return default if spec is None else spec.direction

    def of_family(self, family: str) -> tuple[str, ...]:
        return tuple(s.name for s in self if s.family == family)

    def selectors(self) -> dict[str, tuple[str, ...]]:
        """Every name ``--metrics`` accepts, with the metrics it selects (in registry order)."""
        out: dict[str, list[str]] = {spec.name: [spec.name] for spec in self}
        for spec in self:
            for alias in spec.aliases:
                out.setdefault(alias, []).append(spec.name)
            for group in spec.groups:
                out.setdefault(group, []).append(spec.name)
        for family in FAMILIES:
            members = self.of_family(family)
            if members and family not in out:
                out[family] = list(members)
        out["all"] = list(self.default_names())
        out["every"] = list(self.names())
        return {k: tuple(v) for k, v in out.items()}

    def parse(self, spec: str | Iterable[str] | None, option: str = "--metrics") -> tuple[str, ...]:
        """'is,fid,prc' -> ('is', 'fid', 'precision', 'recall') in registry order.

        Unknown names are a UsageError that lists the valid ones and suggests the closest.
        """
        if spec is None:
            return self.default_names()
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        selectors = self.selectors()
        chosen: set[str] = set()
        bad: list[str] = []
        for raw in items:
            name = raw.strip().lower()
            if not name:
                continue
            if name in selectors:
                chosen.update(selectors[name])
            else:
                bad.append(raw.strip())
        if bad or not chosen:
            import difflib

            if bad:
                close = difflib.get_close_matches(bad[0].lower(), list(selectors), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                what = f"unknown metric name(s): {', '.join(bad)}{hint}"
            else:
                what = "no metric selected"
            raise UsageError(f"{option}: {what}; valid names: {', '.join(selectors)}")
        return tuple(n for n in self._specs if n in chosen)


REGISTRY = MetricRegistry()
_r = REGISTRY.register

_r(MetricSpec(
    name="is", title="IS", direction=+1, family="inception",
    compute="genbench.metrics.fidelity:compute_is",
    description="Inception Score: confidence and variety of Inception-v3's ImageNet classes "
                "(as torch-fidelity computes it). Blind to the real set; weak for medical images.",
    aliases=("isc",), digits=2, distributed=True))
_r(MetricSpec(
    name="fid", title="FID", direction=-1, family="inception",
    compute="genbench.metrics.fidelity:compute_fid",
    description="Fréchet Inception Distance between Gaussians fitted to pool3 features of real and "
                "synthetic images; biased upwards at small N (compare with the floor at the same N).",
    digits=2, distributed=True))
_r(MetricSpec(
    name="kid", title="KID", direction=-1, family="inception",
    compute="genbench.metrics.fidelity:compute_kid",
    description="Kernel Inception Distance (unbiased polynomial-kernel MMD over subsets); prefer it "
                "to FID for the few-hundred-image sets typical in medicine.", digits=4, distributed=True))
_r(MetricSpec(
    name="precision", title="Precision", direction=+1, family="inception",
    compute="genbench.metrics.fidelity:compute_precision",
    description="Share of synthetic images inside the real feature manifold (k-NN balls, k=3): fidelity.",
    groups=("prc", "pr"), distributed=True))
_r(MetricSpec(
    name="recall", title="Recall", direction=+1, family="inception",
    compute="genbench.metrics.fidelity:compute_recall",
    description="Share of real images inside the synthetic feature manifold: coverage / diversity.",
    groups=("prc", "pr"), distributed=True))
_r(MetricSpec(
    name="fds", title="FDS", direction=-1, family="pixels",
    compute="genbench.metrics.fds:compute_fds_metric",
    description="Feature distribution similarity (the paper's): KL(N_real || N_synth) of Gaussians "
                "fitted to a joint t-SNE embedding of PCA-reduced pixels; catches distribution shifts."))
_r(MetricSpec(
    name="ds", title="DS", direction=-1, family="pixels",
    compute="genbench.metrics.ds:compute_ds_metric",
    description="Diversity score (the paper's): KL between the real and synthetic histograms of each "
                "image's nearest-neighbour SSIM within its own set; catches collapse and noise.",
    distributed=True))
_r(MetricSpec(
    name="mem", title="Mem (privacy)", direction=-1, family="train",
    compute="genbench.metrics.mem:compute_mem_metric",
    description="Memorisation audit: share of synthetic images closer (exact SSIM) to a training "
                "image than the --mem-quantile of held-out real images are; ideal ~ 1 - quantile, "
                "a copier 1. Needs the training set (--train; genbench run passes it).",
    aliases=("memorisation", "memorization"), groups=("privacy",), distributed=True))
_r(MetricSpec(
    name="c2st", title="C2ST", direction=-1, family="pixels",
    compute="genbench.metrics.c2st:compute_c2st",
    description="Machine Turing test: held-out accuracy of a small CNN trained from scratch to tell "
                "real from synthetic (balanced, size-matched k-fold; exact binomial CI); 0.5 = "
                "indistinguishable, 1 = always told apart. Needs no weights.",
    aliases=("machine-turing",)))
_r(MetricSpec(
    name="frd", title="FRD", direction=-1, family="radiomics",
    compute="genbench.metrics.frd:compute_frd_metric",
    description="Fréchet Radiomics Distance (frd-score on pyradiomics, v1 by default: ln of the Fréchet "
                "distance between z-scored radiomic features; no learned weights, runs offline). Tracks "
                "downstream use and radiologists better than FID (Konz, Osuala et al. 2026).",
    aliases=("radiomics-fd",), distributed=True))
_r(MetricSpec(
    name="msssim", title="MS-SSIM", direction=-1, family="pixels",
    compute="genbench.metrics.msssim:compute_msssim_metric",
    description="Mean MS-SSIM over random pairs within the synthetic set (MONAI's diversity protocol): "
                "high = collapse; read beside the real set's value (noise scores low too).",
    aliases=("ms-ssim",), digits=4))
_r(MetricSpec(
    name="vendi", title="Vendi", direction=+1, family="pixels",
    compute="genbench.metrics.vendi:compute_vendi_metric",
    description="Vendi score of the synthetic set (vendi-score; pixel kernel by default): its effective "
                "number of distinct images; read beside the real set's value (noise scores high too).",
    digits=2))


def _register_backbones() -> None:
    # One entry per backbone and metric ("fd_dinov2-vit-b14"), off by default: `--backbone
    # NAME:PATH` adds its six metrics to the selection, `--metrics NAME` selects them too.
    from genbench.metrics import backbones as bb

    for spec in bb.BACKBONES.values():
        for metric, (title, direction, digits, text) in bb.BACKBONE_METRIC_INFO.items():
            _r(MetricSpec(
                name=bb.metric_name(metric, spec.name), title=f"{title} {spec.short}", direction=direction,
                family="backbone", compute=f"genbench.metrics.backbones:{bb.registry_function_name(metric, spec.name)}",
                description=text.format(b=spec.short), groups=(spec.name,), default=False, digits=digits,
                distributed=True))


_register_backbones()
del _r


def markdown_table(registry: MetricRegistry = REGISTRY) -> str:
    """The README's metric list (between its ``metrics:start``/``metrics:end`` markers)."""
    lines = ["| `--metrics` name | metric | better | needs | what it measures |", "|---|---|:---:|---|---|"]
    groups: dict[str, list[str]] = {}
    for spec in registry:
        for alias in spec.groups:
            groups.setdefault(alias, []).append(spec.name)
        names = ", ".join(f"`{n}`" for n in (spec.name, *spec.aliases))
        lines.append(f"| {names} | {spec.title} | {spec.arrow} | {FAMILIES[spec.family]} | {spec.description} |")
    extra = [f"`{g}` = {' + '.join(v)}" for g, v in groups.items()]
    extra += ["a family name (" + ", ".join(f"`{f}`" for f in FAMILIES if registry.of_family(f)) + ") selects its metrics",
              "`all` = every default metric", "`every` = every registered metric"]
    return "\n".join(lines) + "\n\nGroups: " + "; ".join(extra) + ".\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
