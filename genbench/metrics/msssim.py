"""MS-SSIM diversity: the mean multi-scale SSIM over random pairs of images within one set.

MONAI's protocol for generative models (its model cards and generative tutorials): images in
[0, 1] (canonical ``(x + 1) / 2``), ``data_range = 1``, pairs of distinct images of the same set,
the mean over pairs. High values mean the images resemble each other (mode collapse); low values
mean variety. The value is only meaningful beside the same number for a real set of the same
size (``params["real_value"]``, and the real-vs-real floor row): the metric cannot tell variety
from noise (pure noise scores lowest).

MS-SSIM (Wang, Simoncelli & Bovik 2003) exactly as ``pytorch-msssim`` computes it: per scale a
"valid" (unpadded) separable Gaussian window (11 taps, sigma 1.5), ``K = (0.01, 0.03)``;
contrast-structure ``cs`` at every scale but the last and the full SSIM at the last, each
clipped at 0 (ReLU), combined as ``prod_s v_s ** w_s`` with the standard weights
``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``; between scales a 2 x 2 average pool (padding 1 on
odd sides). ``pytorch-msssim`` needs the smaller image side above ``10 * 2**4 = 160`` px for its
five scales; smaller images (the 32-64 px quick presets) keep the 11-tap window and use fewer
scales, ``S = max{s : side > 10 * 2**(s-1)}``, with the first ``S`` weights renormalised to sum
to 1 (at 16-31 px that is plain SSIM). The scales and weights used are in ``params``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genbench.errors import GenbenchError

__all__ = ["MSSSIMSettings", "ms_ssim", "pair_indices", "set_msssim", "settings_for"]

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
DEFAULT_PAIRS = 1000


class MSSSIMInputError(GenbenchError):
    """Images too small or too few for MS-SSIM."""


@dataclass(frozen=True)
class MSSSIMSettings:
    weights: tuple[float, ...] = WEIGHTS
    win_size: int = WIN
    sigma: float = SIGMA
    data_range: float = 1.0

    @property
    def scales(self) -> int:
        return len(self.weights)

    def as_dict(self) -> dict[str, object]:
        return {"scales": self.scales, "weights": [round(w, 6) for w in self.weights],
                "win_size": self.win_size, "sigma": self.sigma, "k1": K1, "k2": K2,
                "data_range": self.data_range, "input": "(x + 1) / 2 in [0, 1]"}


def settings_for(height: int, width: int) -> MSSSIMSettings:
    """Five standard scales when the image allows them (pytorch-msssim's condition), else fewer."""
    side = min(height, width)
    scales = max((s for s in range(1, len(WEIGHTS) + 1) if side > (WIN - 1) * 2 ** (s - 1)), default=0)
    if scales == 0:
        raise MSSSIMInputError(f"MS-SSIM needs images larger than {WIN - 1} px (its window is {WIN} taps); "
                               f"got {height}x{width}")
    if scales == len(WEIGHTS):
        return MSSSIMSettings()  # the standard weights as published (they sum to 1.0001)
    w = np.asarray(WEIGHTS[:scales], dtype=np.float64)
    return MSSSIMSettings(weights=tuple(float(v) for v in w / w.sum()))


def _window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Built in float32 and then cast, as pytorch-msssim builds it: the taps are then the same
    # numbers in both (a float64-built window differs by ~1e-8 and moves MS-SSIM by ~5e-7).
    c = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(c ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k))
    return F.conv2d(x, g.view(1, 1, k, 1))


def ms_ssim(x: torch.Tensor, y: torch.Tensor, settings: MSSSIMSettings | None = None) -> torch.Tensor:
    """MS-SSIM of each pair (x[i], y[i]); x, y: (B, 1, H, W) in [0, data_range]. Returns (B,)."""
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"ms_ssim needs two (B, 1, H, W) batches of equal shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    st = settings or settings_for(x.shape[-2], x.shape[-1])
    g = _window(st.win_size, st.sigma, x.dtype, x.device)
    c1, c2 = (K1 * st.data_range) ** 2, (K2 * st.data_range) ** 2
    weights = torch.tensor(st.weights, dtype=x.dtype, device=x.device)
    levels = []
    for s in range(st.scales):
        mx, my = _blur(x, g), _blur(y, g)
        vx = _blur(x * x, g) - mx * mx
        vy = _blur(y * y, g) - my * my
        cxy = _blur(x * y, g) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        if s < st.scales - 1:
            levels.append(torch.relu(cs.flatten(1).mean(1)))
            pad = [d % 2 for d in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        else:
            ssim = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs
            levels.append(torch.relu(ssim.flatten(1).mean(1)))
    stacked = torch.stack(levels, dim=0)  # (scales, B)
    return torch.prod(stacked ** weights.view(-1, 1), dim=0)


def pair_indices(n: int, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` distinct unordered pairs (i < j) of range(n), drawn without replacement; all pairs
    when there are no more than that."""
    if n < 2:
        raise MSSSIMInputError(f"MS-SSIM diversity needs at least 2 images, got {n}")
    total = n * (n - 1) // 2
    if total <= pairs:
        flat = np.arange(total)
    else:
        flat = np.sort(np.random.default_rng(seed).choice(total, size=pairs, replace=False))
    # Unrank flat indices of the upper triangle, row by row: row i holds n-1-i pairs.
    starts = np.concatenate([[0], np.cumsum(np.arange(n - 1, 0, -1))])
    i = np.searchsorted(starts, flat, side="right") - 1
    j = flat - starts[i] + i + 1
    return i.astype(np.int64), j.astype(np.int64)


def pair_values(images: torch.Tensor, i: np.ndarray, j: np.ndarray, *, device: str | torch.device = "cpu",
                batch: int = 64, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """MS-SSIM of each listed pair of canonical (N, 1, H, W) images, float64 (computed in float64)."""
    x01 = ((images.detach().to(torch.float64).clamp(-1, 1) + 1.0) / 2.0)
    st = settings_for(x01.shape[-2], x01.shape[-1])
    out = np.empty(len(i), dtype=np.float64)
    dev = torch.device(device)
    with torch.inference_mode():
        for s in range(0, len(i), batch):
            a = x01[torch.from_numpy(i[s:s + batch])].to(dev)
            b = x01[torch.from_numpy(j[s:s + batch])].to(dev)
            out[s:s + len(a)] = ms_ssim(a, b, st).cpu().numpy()
            if progress is not None:
                progress(min(s + batch, len(i)), len(i))
    return out


@dataclass
class SetMSSSIM:
    value: float  # mean over pairs
    i: np.ndarray
    j: np.ndarray
    values: np.ndarray  # per pair
    n: int
    settings: MSSSIMSettings

    def replicates(self, boot: object, stream: int) -> np.ndarray:
        """Bootstrap replicates: the pair mean reweighted by how often each image was drawn
        (``c_i c_j``), i.e. the mean over pairs of distinct positions of the resampled set that
        fall on the listed pairs."""
        from genbench.stats import counts

        out = np.empty(boot.replicates)  # type: ignore[attr-defined]
        chunk = 256
        for start in range(0, boot.replicates, chunk):  # type: ignore[attr-defined]
            stop = min(boot.replicates, start + chunk)  # type: ignore[attr-defined]
            c = counts(boot.indices(self.n, stream, start, stop), self.n).astype(np.float64)  # type: ignore[attr-defined]
            w = c[:, self.i] * c[:, self.j]
            tot = w.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start:stop] = np.where(tot > 0, (w * self.values).sum(1) / tot, np.nan)
        return out


def set_msssim(images: torch.Tensor, *, pairs: int = DEFAULT_PAIRS, seed: int = 0,
               device: str | torch.device = "cpu",
               progress: Callable[[int, int], None] | None = None) -> SetMSSSIM:
    """Mean MS-SSIM over ``pairs`` random pairs of distinct images of one canonical set."""
    n = len(images)
    st = settings_for(images.shape[-2], images.shape[-1])
    i, j = pair_indices(n, pairs, seed)
    vals = pair_values(images, i, j, device=device, progress=progress)
    return SetMSSSIM(float(vals.mean()), i, j, vals, n, st)


def compute_msssim_metric(ctx: Any) -> Any:
    """Registry entry: the synthetic set's MS-SSIM diversity, the real set's beside it."""
    from genbench.metrics.result import MetricResult

    pairs = int(ctx.options.msssim_pairs)
    seed = int(getattr(ctx.options, "base_seed", None) or ctx.seed or 0)

    def of(which: str, total_pairs: int) -> SetMSSSIM:
        def compute(images: Any) -> SetMSSSIM:
            with ctx.step(f"MS-SSIM ({which})", total_pairs) as step:
                return set_msssim(images.images, pairs=pairs, seed=seed, device=ctx.device,
                                  progress=step.absolute)
        return ctx.per_set(("msssim", pairs, seed), which, compute)

    def n_pairs(n: int) -> int:
        return min(pairs, n * (n - 1) // 2)

    syn = of("synth", n_pairs(len(ctx.synth)))
    real = of("real", n_pairs(len(ctx.real)))
    res = MetricResult(name="msssim", value=syn.value, params={
        **syn.settings.as_dict(), "pairs": len(syn.i), "pair_seed": seed, "set": "synth",
        "real_value": real.value, "real_pairs": len(real.i),
        "protocol": "mean MS-SSIM over random pairs of distinct images within the set (MONAI)",
        "reading": "lower = more varied; compare with real_value (noise also scores low)"})
    boot = ctx.boot
    if boot.enabled:
        from genbench.stats import SYNTH, attach_ci

        attach_ci(res, syn.replicates(boot, SYNTH), boot, bounds=(0.0, 1.0), params={
            "ci_statistic": "pair mean reweighted by resample counts c_i c_j (synthetic images)"})
    return res
