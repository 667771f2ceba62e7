"""Vectorised drawing primitives for the procedural phantoms.

A :class:`Canvas` holds a stack of ``n`` slices (n, S, S) and paints soft-edged shapes whose
parameters differ per slice (arrays of shape (n,)). Coordinates are normalised: ``u`` runs
left to right and ``v`` top to bottom over [-1, 1], so one unit is half the canvas width and
shapes scale with the requested size. Each shape is evaluated only inside the union of its
per-slice bounding boxes, which keeps a 256 px, 1000-slice phantom set to a few seconds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

Param = float | np.ndarray


def _col(x: Param, n: int) -> np.ndarray:
    """A per-slice parameter as an (n, 1, 1) float32 column."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 0:
        arr = np.full(n, float(arr), dtype=np.float32)
    return arr.reshape(n, 1, 1)


class Canvas:
    """Image and label stacks with per-slice soft-edged painting."""

    def __init__(self, n: int, size: int, background: float = 0.0, dtype=np.float32) -> None:
        self.n = n
        self.size = size
        self.img = np.full((n, size, size), background, dtype=dtype)
        self.lab = np.zeros((n, size, size), dtype=np.int16)
        # Pixel centres in normalised coordinates.
        self.grid = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0).astype(
            np.float32
        )

    def _window(self, cx: np.ndarray, cy: np.ndarray, reach: np.ndarray) -> tuple[slice, slice]:
        """Row/column slices covering every slice's shape (plus a two-pixel margin)."""
        pad = 4.0 / self.size
        lo_u, hi_u = float(np.min(cx - reach)) - pad, float(np.max(cx + reach)) + pad
        lo_v, hi_v = float(np.min(cy - reach)) - pad, float(np.max(cy + reach)) + pad
        to_px = lambda t: int(np.clip(np.floor((t + 1.0) / 2.0 * self.size), 0, self.size))
        c0, c1 = to_px(lo_u), to_px(hi_u) + 1
        r0, r1 = to_px(lo_v), to_px(hi_v) + 1
        return slice(r0, min(r1, self.size)), slice(c0, min(c1, self.size))

    def coverage(
        self,
        cx: Param,
        cy: Param,
        a: Param,
        b: Param,
        theta: Param = 0.0,
        harmonics: np.ndarray | None = None,
        active: np.ndarray | None = None,
        edge: float = 1.0,
        thickness: bool = False,
        window: bool = True,
    ) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Soft coverage in [0, 1] of a (perturbed) ellipse, restricted to its bounding window.

        ``harmonics`` (n, 4) holds cos/sin coefficients of angular modes 2 and 3 that bend the
        ellipse into an organ-like outline; ``edge`` is the width of the antialiasing ramp in
        pixels (wider ramps blur the boundary, as partial-volume effects do).
        """
        n = self.n
        cx_, cy_, a_, b_, th = (_col(p, n) for p in (cx, cy, a, b, theta))
        a_ = np.maximum(a_, 1e-4)
        b_ = np.maximum(b_, 1e-4)
        bend = 0.0 if harmonics is None else np.abs(harmonics).sum(axis=1).reshape(n, 1, 1)
        reach = np.maximum(a_, b_) * (1.0 + bend)
        live = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if not live.any():
            if not window:
                return np.zeros((n, self.size, self.size), np.float32), (
                    slice(0, self.size),
                    slice(0, self.size),
                )
            return np.zeros((n, 0, 0), np.float32), (slice(0, 0), slice(0, 0))
        if window:
            rows, cols = self._window(cx_[live, 0, 0], cy_[live, 0, 0], reach[live, 0, 0])
        else:  # the whole canvas, e.g. for masks combined with full-size arrays
            rows, cols = slice(0, self.size), slice(0, self.size)
        u = self.grid[cols].reshape(1, 1, -1)
        v = self.grid[rows].reshape(1, -1, 1)
        du, dv = u - cx_, v - cy_
        c, s = np.cos(th), np.sin(th)
        # Rotated, axis-scaled coordinates; the small (n,1,W)/(n,H,1) factors are formed first so
        # that only one full-size add is needed per coordinate.
        x = du * (c / a_) + dv * (s / a_)
        y = dv * (c / b_) - du * (s / b_)
        r2 = x * x
        r2 += y * y
        rho = np.sqrt(r2)
        boundary: np.ndarray | float = 1.0
        if harmonics is not None:
            h = harmonics.astype(np.float32).reshape(n, 4, 1, 1)
            # cos/sin of 2 phi and 3 phi as polynomials in x, y (no atan2 needed).
            r2 += 1e-12
            xy = x * y
            m2 = (h[:, 0] * (x * x - y * y) + (2 * h[:, 1]) * xy) / r2
            m3 = (h[:, 2] * x * (x * x - 3 * y * y) + h[:, 3] * y * (3 * x * x - y * y)) / (
                r2 * (rho + 1e-12)
            )
            m2 += m3
            m2 += 1.0
            boundary = m2
        if thickness:
            # Chord length through an ellipsoid, normalised to 1 at the centre: what a
            # projection (x-ray) sees of a solid organ.
            prof = np.sqrt(np.clip(1.0 - (rho / boundary) ** 2, 0.0, 1.0)).astype(np.float32)
            if active is not None:
                prof *= live.reshape(n, 1, 1)
            return prof, (rows, cols)
        # Distance to the outline in pixels, approximated along the radius.
        scale_px = np.sqrt(a_ * b_) * (self.size / 2.0) / edge
        rho -= boundary
        rho *= -scale_px
        rho += 0.5
        cov = np.clip(rho, 0.0, 1.0, out=rho)
        if active is not None:
            cov *= live.reshape(n, 1, 1)
        return cov, (rows, cols)

    def paint(self, value: Param | np.ndarray, label: int | None = None, **shape) -> np.ndarray:
        """Alpha-composite ``value`` (scalar, (n,), or an (n, S, S) field) over the shape."""
        cov, (rows, cols) = self.coverage(**shape)
        if cov.size == 0:
            return cov
        sub = self.img[:, rows, cols]
        val = self._value(value, rows, cols)
        sub += (val - sub) * cov
        self.img[:, rows, cols] = sub
        if label is not None:
            lab = self.lab[:, rows, cols]
            lab[cov >= 0.5] = label
            self.lab[:, rows, cols] = lab
        return cov

    def add(self, value: Param | np.ndarray, **shape) -> np.ndarray:
        """Add ``value`` times the coverage (used for projection-like images)."""
        cov, (rows, cols) = self.coverage(**shape)
        if cov.size == 0:
            return cov
        self.img[:, rows, cols] += self._value(value, rows, cols) * cov
        return cov

    def project(self, value: Param | np.ndarray, **shape) -> np.ndarray:
        """Add ``value`` times the normalised chord length through an ellipsoid."""
        prof, (rows, cols) = self.coverage(thickness=True, **shape)
        if prof.size == 0:
            return prof
        self.img[:, rows, cols] += self._value(value, rows, cols) * prof
        return prof

    def _value(self, value: Param | np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim == 3:
            return arr[:, rows, cols]
        return _col(arr, self.n)


def smooth_field(
    rng: np.random.Generator, n: int, size: int, cells: int, amplitude: Param
) -> np.ndarray:
    """Smooth random field (n, S, S): Gaussian noise on a ``cells`` x ``cells`` grid, upsampled."""
    coarse = rng.standard_normal((n, 1, cells, cells), dtype=np.float32)
    field = F.interpolate(
        torch.from_numpy(coarse), size=(size, size), mode="bicubic", align_corners=False
    )
    return field[:, 0].numpy() * _col(amplitude, n)


def correlated_noise(rng: np.random.Generator, n: int, size: int, sigma_px: float) -> np.ndarray:
    """Unit-variance Gaussian noise with a Gaussian autocorrelation of ``sigma_px`` pixels."""
    from scipy.ndimage import correlate1d

    white = rng.standard_normal((n, size, size), dtype=np.float32)
    if sigma_px <= 0.05:
        return white
    radius = max(1, int(np.ceil(3 * sigma_px)))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / sigma_px) ** 2)
    k = (k / np.sqrt((k**2).sum())).astype(
        np.float32
    )  # keeps unit variance after the separable blur
    out = correlate1d(white, k, axis=2, mode="reflect")
    return correlate1d(out, k, axis=1, mode="reflect")


def harmonics(rng: np.random.Generator, n: int, amount: float) -> np.ndarray:
    """Random outline perturbations (n, 4): modes 2 and 3 with total amplitude ~``amount``."""
    return (rng.uniform(-1.0, 1.0, size=(n, 4)) * amount / 2.0).astype(np.float32)
