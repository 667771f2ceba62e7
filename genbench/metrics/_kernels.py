"""Compiled kernels of the nearest-SSIM engine (numba, CPU).

The SSIM definition is scikit-image's ``structural_similarity`` with ``gaussian_weights=True,
sigma=1.5, use_sample_covariance=False``: an 11-tap Gaussian (truncate 3.5), reflect padding, and
the mean of the SSIM map after cropping ``pad = 5`` pixels from every border. Because the crop
equals the filter radius, every kept pixel of a filtered map depends only on pixels inside the
image: the reflect padding never reaches the mean. The kernels therefore compute "valid"
correlations (no padding at all) over the (H - 10) x (W - 10) cropped grid.

Per image, the local mean and variance are computed once in float64 (``image_stats``). Per pair
only the cross moment E[xy] is filtered, in float32, strip by strip (STRIP output rows, so that a
task's few images stay in L2), and the SSIM map is reduced row by row into a float64
accumulator. Measured against scikit-image in float64 the per-image error is ~1e-7.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# No reassociation (it would change values); the pixel loops vectorise without it. "contract"
# lets LLVM fuse multiply-adds, which is at least as accurate as separate roundings.
# error_model="numpy" matters for speed: Python's ZeroDivisionError check on every division kept
# the SSIM-map loop scalar (5x slower). Denominators are >= C1 * C2 > 0 here anyway.
_FLAGS = {"contract"}
TASK = 16  # pairs per scheduled task (a 4 x 4 sub-block of images)
STRIP = 64  # cropped rows per strip (measured best of 16, 32, 64, 128 at 256 px)
TAPS = 11  # Gaussian sigma 1.5 truncated at 3.5 sigma: radius int(3.5 * 1.5 + 0.5) = 5


@njit(cache=True, parallel=True, fastmath=False)
def image_stats(x: np.ndarray, w: np.ndarray, mu: np.ndarray, var: np.ndarray) -> None:  # pragma: no cover - compiled
    """Local Gaussian mean and (population) variance on the cropped grid, float64 inside.

    x: (n, H, W) float32; w: (K,) float64 taps; mu, var: (n, H-K+1, W-K+1) float32 outputs.
    """
    n, h, wd = x.shape
    k = w.shape[0]
    hc = h - k + 1
    wc = wd - k + 1
    for i in prange(n):
        h1 = np.zeros((h, wc), np.float64)
        h2 = np.zeros((h, wc), np.float64)
        for r in range(h):
            for t in range(k):
                wt = w[t]
                for c in range(wc):
                    v = np.float64(x[i, r, c + t])
                    h1[r, c] += wt * v
                    h2[r, c] += wt * (v * v)
        for r in range(hc):
            m = np.zeros(wc, np.float64)
            s = np.zeros(wc, np.float64)
            for t in range(k):
                wt = w[t]
                for c in range(wc):
                    m[c] += wt * h1[r + t, c]
                    s[c] += wt * h2[r + t, c]
            for c in range(wc):
                mu[i, r, c] = np.float32(m[c])
                var[i, r, c] = np.float32(s[c] - m[c] * m[c])


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _map_row(
    cross: np.ndarray,
    ma_row: np.ndarray,
    mb_row: np.ndarray,
    va_row: np.ndarray,
    vb_row: np.ndarray,
    c1: np.float32,
    c2: np.float32,
    acc: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Add one row of the SSIM map to ``acc`` (float64), given the filtered E[xy] row."""
    two = np.float32(2.0)
    for c in range(cross.shape[0]):
        ma = ma_row[c]
        mb = mb_row[c]
        mab = ma * mb
        num = (two * mab + c1) * (two * (cross[c] - mab) + c2)
        den = (ma * ma + mb * mb + c1) * (va_row[c] + vb_row[c] + c2)
        acc[c] += np.float64(num / den)


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _pair_ssim(
    xa: np.ndarray,
    xb: np.ndarray,
    mua: np.ndarray,
    mub: np.ndarray,
    vara: np.ndarray,
    varb: np.ndarray,
    w: np.ndarray,
    c1: np.float32,
    c2: np.float32,
    prod: np.ndarray,
    hbuf: np.ndarray,
    cross: np.ndarray,
    acc: np.ndarray,
    o_start: int,
    o_stop: int,
) -> float:  # pragma: no cover - compiled
    """Sum of one pair's SSIM map over cropped rows [o_start, o_stop); scratch is the caller's.

    The 11 taps are spelled out so that each filtered value is summed in a register (a loop over
    taps would load and store the accumulator 11 times per pixel). The vertical pass makes four
    output rows from 14 loaded rows (3.5 loads per output instead of 11): the kernel is bound by
    loads, not arithmetic. Each pixel loop touches few arrays, so LLVM's runtime alias checks
    stay within its limit and the loops vectorise.
    """
    wd = xa.shape[1]
    wc = wd - TAPS + 1
    w0, w1, w2, w3, w4, w5 = w[0], w[1], w[2], w[3], w[4], w[5]
    w6, w7, w8, w9, w10 = w[6], w[7], w[8], w[9], w[10]
    for c in range(wc):
        acc[c] = 0.0
    for r in range(o_start, o_stop + TAPS - 1):
        for c in range(wd):
            prod[c] = xa[r, c] * xb[r, c]
        i = r - o_start
        for c in range(wc):
            hbuf[i, c] = (
                w0 * prod[c] + w1 * prod[c + 1] + w2 * prod[c + 2] + w3 * prod[c + 3]
                + w4 * prod[c + 4] + w5 * prod[c + 5] + w6 * prod[c + 6] + w7 * prod[c + 7]
                + w8 * prod[c + 8] + w9 * prod[c + 9] + w10 * prod[c + 10]
            )
    o = o_start
    while o + 4 <= o_stop:
        i = o - o_start
        for c in range(wc):
            v0 = hbuf[i, c]
            v1 = hbuf[i + 1, c]
            v2 = hbuf[i + 2, c]
            v3 = hbuf[i + 3, c]
            v4 = hbuf[i + 4, c]
            v5 = hbuf[i + 5, c]
            v6 = hbuf[i + 6, c]
            v7 = hbuf[i + 7, c]
            v8 = hbuf[i + 8, c]
            v9 = hbuf[i + 9, c]
            v10 = hbuf[i + 10, c]
            v11 = hbuf[i + 11, c]
            v12 = hbuf[i + 12, c]
            v13 = hbuf[i + 13, c]
            cross[0, c] = (w0 * v0 + w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4 + w5 * v5 + w6 * v6
                           + w7 * v7 + w8 * v8 + w9 * v9 + w10 * v10)
            cross[1, c] = (w0 * v1 + w1 * v2 + w2 * v3 + w3 * v4 + w4 * v5 + w5 * v6 + w6 * v7
                           + w7 * v8 + w8 * v9 + w9 * v10 + w10 * v11)
            cross[2, c] = (w0 * v2 + w1 * v3 + w2 * v4 + w3 * v5 + w4 * v6 + w5 * v7 + w6 * v8
                           + w7 * v9 + w8 * v10 + w9 * v11 + w10 * v12)
            cross[3, c] = (w0 * v3 + w1 * v4 + w2 * v5 + w3 * v6 + w4 * v7 + w5 * v8 + w6 * v9
                           + w7 * v10 + w8 * v11 + w9 * v12 + w10 * v13)
        for k in range(4):
            _map_row(cross[k], mua[o + k], mub[o + k], vara[o + k], varb[o + k], c1, c2, acc)
        o += 4
    while o < o_stop:  # the last rows of the image, one at a time
        i = o - o_start
        for c in range(wc):
            cross[0, c] = (
                w0 * hbuf[i, c] + w1 * hbuf[i + 1, c] + w2 * hbuf[i + 2, c]
                + w3 * hbuf[i + 3, c] + w4 * hbuf[i + 4, c] + w5 * hbuf[i + 5, c]
                + w6 * hbuf[i + 6, c] + w7 * hbuf[i + 7, c] + w8 * hbuf[i + 8, c]
                + w9 * hbuf[i + 9, c] + w10 * hbuf[i + 10, c]
            )
        _map_row(cross[0], mua[o], mub[o], vara[o], varb[o], c1, c2, acc)
        o += 1
    total = 0.0
    for c in range(wc):
        total += acc[c]
    return total


@njit(cache=True, parallel=True, fastmath=_FLAGS, error_model="numpy")
def block_pairs(
    xi: np.ndarray,
    mui: np.ndarray,
    vari: np.ndarray,
    xj: np.ndarray,
    muj: np.ndarray,
    varj: np.ndarray,
    w32: np.ndarray,
    c1: float,
    c2: float,
    pa: np.ndarray,
    pb: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """SSIM of the pairs (xi[pa[q]], xj[pb[q]]) into ``out[q]``.

    The pair list is cut into many small tasks so that the scheduler can balance them (other
    processes share these cores); consecutive pairs share image ``pa[q]``, which stays cached.
    """
    npairs = pa.shape[0]
    wd = xi.shape[2]
    c1f = np.float32(c1)
    c2f = np.float32(c2)
    ntasks = (npairs + TASK - 1) // TASK
    for t in prange(ntasks):
        _pair_range(xi, mui, vari, xj, muj, varj, w32, c1f, c2f, pa, pb, out,
                    t * TASK, min(npairs, (t + 1) * TASK), wd)


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _pair_range(
    xi: np.ndarray,
    mui: np.ndarray,
    vari: np.ndarray,
    xj: np.ndarray,
    muj: np.ndarray,
    varj: np.ndarray,
    w32: np.ndarray,
    c1f: np.float32,
    c2f: np.float32,
    pa: np.ndarray,
    pb: np.ndarray,
    out: np.ndarray,
    start: int,
    stop: int,
    wd: int,
) -> None:  # pragma: no cover - compiled
    # A plain serial function: inlined into the parallel loop body, LLVM stopped vectorising
    # the pixel loops (measured 6x slower).
    wc = wd - TAPS + 1
    prod = np.empty(wd, np.float32)
    hbuf = np.empty((STRIP + TAPS - 1, wc), np.float32)
    cross = np.empty((4, wc), np.float32)
    acc = np.empty(wc, np.float64)
    hc = xi.shape[1] - TAPS + 1
    for q in range(start, stop):
        out[q] = 0.0
    # Row strips, all of this task's pairs per strip: the task's few images (pairs come in
    # 4 x 4 sub-blocks) then stay in L2 across pairs instead of streaming from memory per pair.
    # Each strip re-filters TAPS - 1 halo rows horizontally (~15% more of that pass at STRIP 64).
    for o0 in range(0, hc, STRIP):
        o1 = min(hc, o0 + STRIP)
        for q in range(start, stop):
            a = pa[q]
            b = pb[q]
            out[q] += _pair_ssim(
                xi[a], xj[b], mui[a], muj[b], vari[a], varj[b], w32, c1f, c2f,
                prod, hbuf, cross, acc, o0, o1,
            )
    for q in range(start, stop):
        out[q] /= hc * wc
