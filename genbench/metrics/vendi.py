"""The Vendi score (Friedman & Dieng 2023): the effective number of distinct images in one set.

``VS = exp(-sum_i l_i log l_i)`` over the eigenvalues ``l_i`` of ``K / n``, ``K`` an n x n
similarity kernel with ones on the diagonal (order q = 1; eigenvalues <= 0 are left out, as the
``vendi-score`` package does). VS is 1 when all images are identical and n when they are
mutually dissimilar; it has no reference set, so it is reported beside the real set's value at
the same size (``params["real_value"]`` and the real-vs-real floor row). Like every diversity
measure without a reference it rewards noise: read it together with a fidelity metric.

Kernels (``--vendi-kernel``):

- ``pixel`` (default): cosine similarity of the 8-bit pixel vectors after a 32 x 32 resize, the
  package's own ``pixel_vendi_score`` protocol (PIL resize, flatten, L2-normalise, linear kernel);
- ``ssim``: K_ij = SSIM(x_i, x_j), genbench's SSIM (scikit-image's definition, Gaussian window
  sigma 1.5, canonical range), computed by the nearest-SSIM engine for every pair: O(N^2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genbench.errors import GenbenchError, UsageError

__all__ = ["VENDI_KERNELS", "kernel_matrix", "pixel_vectors", "set_vendi", "vendi_from_kernel"]

VENDI_KERNELS = ("pixel", "ssim")
PIXEL_SIZE = 32


class VendiInputError(GenbenchError):
    """Too few images for a Vendi score."""


def check_kernel(kernel: str) -> str:
    k = str(kernel).lower()
    if k not in VENDI_KERNELS:
        raise UsageError(f"--vendi-kernel must be one of {', '.join(VENDI_KERNELS)}, got {kernel!r}")
    return k


def vendi_from_kernel(k: np.ndarray) -> float:
    """exp(Shannon entropy of the eigenvalues of K / n), K symmetric with unit diagonal."""
    k = np.asarray(k, dtype=np.float64)
    n = k.shape[0]
    w = np.linalg.eigvalsh((k + k.T) / (2.0 * n))
    w = w[w > 0]
    return float(np.exp(-(w * np.log(w)).sum()))


def pixel_vectors(images: torch.Tensor) -> np.ndarray:
    """vendi-score's ``get_pixel_vectors`` on canonical images: 8-bit grey PIL image, resized to
    32 x 32 by PIL's default filter, flattened (float64, not yet normalised)."""
    from PIL import Image

    from genbench.imageset import quantize_uint8

    u8 = quantize_uint8(images.float())[:, 0].cpu().numpy()
    rows = []
    for a in u8:
        img = Image.fromarray(a, mode="L")
        if img.size != (PIXEL_SIZE, PIXEL_SIZE):
            img = img.resize((PIXEL_SIZE, PIXEL_SIZE))
        rows.append(np.asarray(img, dtype=np.float64).ravel())
    return np.stack(rows)


def kernel_matrix(images: torch.Tensor, kernel: str = "pixel", *, device: str | torch.device = "cpu",
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    kernel = check_kernel(kernel)
    if len(images) < 2:
        raise VendiInputError(f"the Vendi score needs at least 2 images, got {len(images)}")
    if kernel == "pixel":
        x = pixel_vectors(images)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)  # an all-black image stays a zero vector, as in sklearn
        return x @ x.T
    from genbench.metrics.ssim import ssim_matrix

    return ssim_matrix(images, device=device, progress=progress)


@dataclass
class SetVendi:
    value: float
    kernel: str
    k: np.ndarray

    def replicates(self, boot: object, stream: int) -> np.ndarray:
        """Bootstrap replicates: the Vendi score of each resampled set (a drawn duplicate is a
        second, identical image: rows and columns of K repeated)."""
        # K[idx, idx] / n has the nonzero eigenvalues of D^1/2 K_UU D^1/2 / n over the k distinct
        # drawn images U with counts D: a k x k problem (k ~ 0.63 n) instead of n x n.
        n = self.k.shape[0]
        out = np.empty(boot.replicates)  # type: ignore[attr-defined]
        for r in range(boot.replicates):  # type: ignore[attr-defined]
            c = np.bincount(boot.indices(n, stream, r, r + 1)[0], minlength=n)  # type: ignore[attr-defined]
            u = np.flatnonzero(c)
            s = np.sqrt(c[u].astype(np.float64))
            w = np.linalg.eigvalsh(self.k[np.ix_(u, u)] * s[:, None] * s[None, :] / n)
            w = w[w > 0]
            out[r] = float(np.exp(-(w * np.log(w)).sum()))
        return out


def set_vendi(images: torch.Tensor, kernel: str = "pixel", *, device: str | torch.device = "cpu",
              progress: Callable[[int, int], None] | None = None) -> SetVendi:
    k = kernel_matrix(images, kernel, device=device, progress=progress)
    return SetVendi(vendi_from_kernel(k), check_kernel(kernel), k)


def compute_vendi_metric(ctx: Any) -> Any:
    """Registry entry: the synthetic set's Vendi score, the real set's beside it."""
    from genbench.metrics.result import MetricResult

    kernel = check_kernel(ctx.options.vendi_kernel)

    def of(which: str) -> SetVendi:
        def compute(images: Any) -> SetVendi:
            n = len(images)
            with ctx.step(f"Vendi ({which})", n * (n - 1) // 2 if kernel == "ssim" else 1) as step:
                return set_vendi(images.images, kernel, device=ctx.device, progress=step.absolute)
        return ctx.per_set(("vendi", kernel), which, compute)

    syn, real = of("synth"), of("real")
    res = MetricResult(name="vendi", value=syn.value, params={
        "kernel": kernel, "order_q": 1, "set": "synth", "real_value": real.value,
        "kernel_definition": "cosine of 32x32 8-bit pixel vectors (vendi-score's pixel_vendi_score)"
        if kernel == "pixel" else "SSIM (scikit-image's definition, canonical range)",
        "reading": "effective number of distinct images, 1..n; compare with real_value (noise also scores high)"})
    boot = ctx.boot
    if boot.enabled:
        from genbench.stats import SYNTH, attach_ci

        attach_ci(res, syn.replicates(boot, SYNTH), boot, bounds=(1.0, None), params={
            "ci_statistic": "Vendi score of each resampled synthetic set (kernel rows repeated)"})
    return res
