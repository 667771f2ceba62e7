"""SSIM exactly as scikit-image computes it, and an engine for every image's nearest SSIM.

Definition (Wang et al. 2004, scikit-image's ``structural_similarity`` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2``): local means,
variances and covariance from an 11-tap Gaussian (sigma 1.5, truncated at 3.5 sigma), constants
``C1 = (0.01 * 2)**2`` and ``C2 = (0.03 * 2)**2`` for the canonical range [-1, 1], and the mean of
the SSIM map over the pixels at least 5 from every border. Those cropped pixels never see the
filter's reflect padding, so all filters here are "valid" correlations.

``nearest_ssim`` is O(N^2) pairs. It never materialises N^2 maps: per image the local mean and
variance are computed once (float64, stored float32), per pair only E[xy] is filtered (float32)
and reduced to one number; tiles of images are compared block against block, symmetric pairs
once, with a running maximum per image. Memory is the images plus a bounded cache of per-block
statistics, independent of N^2. CPU: compiled numba kernels (``_kernels.py``); other devices:
the same algorithm on batched torch tiles.

``nearest_ssim_cross`` is the same engine between two sets (each query image's maximum SSIM over
a reference set, and which reference image attains it): the memorisation audit's "nearest
training image". Same kernels, same per-pair arithmetic, so its values equal what
``nearest_ssim`` would give for the same pair.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genbench.errors import InputError, UsageError

SIGMA = 1.5
TRUNCATE = 3.5
RADIUS = int(TRUNCATE * SIGMA + 0.5)  # 5, as scipy.ndimage and scikit-image round it
WIN = 2 * RADIUS + 1  # 11
K1 = 0.01
K2 = 0.03
DATA_RANGE = 2.0  # canonical images live in [-1, 1]
C1 = (K1 * DATA_RANGE) ** 2
C2 = (K2 * DATA_RANGE) ** 2

Progress = Callable[[int, int], None]
"""Called as ``progress(pairs_done, pairs_total)`` after each tile."""


def gaussian_taps() -> np.ndarray:
    """The 11 normalised Gaussian weights scipy.ndimage.gaussian_filter uses for sigma 1.5."""
    t = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / SIGMA) ** 2)
    return w / w.sum()


@dataclass(frozen=True)
class SSIMSettings:
    """What determines an SSIM value here; recorded in metric params."""

    sigma: float = SIGMA
    truncate: float = TRUNCATE
    win_size: int = WIN
    k1: float = K1
    k2: float = K2
    data_range: float = DATA_RANGE
    use_sample_covariance: bool = False
    crop: int = RADIUS

    def as_dict(self) -> dict[str, float | int | bool]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------
# Reference: one pair, float64, plain numpy.


def _valid_filter(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable Gaussian over the last two axes, only where the window fits (no padding)."""
    k = w.shape[0]
    wc = x.shape[-1] - k + 1
    hc = x.shape[-2] - k + 1
    horiz = sum(w[t] * x[..., :, t : t + wc] for t in range(k))
    return sum(w[t] * horiz[..., t : t + hc, :] for t in range(k))


def _check_size(h: int, w: int, what: str) -> None:
    if h < WIN or w < WIN:
        raise InputError(
            f"SSIM needs images of at least {WIN}x{WIN} pixels (its Gaussian window is {WIN} taps, "
            f"as in scikit-image for sigma {SIGMA}); got {h}x{w}",
            what,
        )


def ssim_pair(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """SSIM of two canonical 2-D images (or (1, H, W)), computed in float64.

    Equals ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=2)``.
    """
    x = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    y = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    x, y = np.squeeze(x), np.squeeze(y)
    if x.shape != y.shape or x.ndim != 2:
        raise InputError(f"ssim_pair needs two 2-D images of the same shape, got {x.shape} and {y.shape}")
    _check_size(*x.shape, "ssim_pair")
    w = gaussian_taps()
    mx, my = _valid_filter(x, w), _valid_filter(y, w)
    vx = _valid_filter(x * x, w) - mx * mx
    vy = _valid_filter(y * y, w) - my * my
    cxy = _valid_filter(x * y, w) - mx * my
    s = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    return float(s.mean())


# ---------------------------------------------------------------------------------------------
# Engine: every image's maximum SSIM against the other images of its set.


def all_finite(arr: np.ndarray, chunk: int = 256) -> bool:
    """NaN/Inf check a few images at a time (a whole-set boolean mask would cost N*H*W bytes)."""
    return all(bool(np.isfinite(arr[i : i + chunk]).all()) for i in range(0, arr.shape[0], chunk))


def _as_stack(images: np.ndarray | torch.Tensor, what: str, min_n: int = 2) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) -> C-contiguous float32 (N, H, W), a view when possible."""
    if isinstance(images, torch.Tensor):
        arr = images.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise InputError(f"expected single-channel images (N, 1, H, W), got {arr.shape}", what)
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise InputError(f"expected images shaped (N, 1, H, W) or (N, H, W), got {arr.shape}", what)
    if arr.shape[0] < min_n:
        raise InputError(f"nearest SSIM needs at least {min_n} image{'s' if min_n > 1 else ''}, "
                         f"got {arr.shape[0]}", what)
    _check_size(arr.shape[1], arr.shape[2], what)
    if not all_finite(arr):
        raise InputError("images contain NaN or Inf values", what)
    return np.ascontiguousarray(arr)


def _tiles(n: int, block: int) -> list[tuple[int, int, int, int]]:
    """Block-pair tiles (i0, i1, j0, j1) with j0 >= i0 covering each unordered pair once."""
    edges = list(range(0, n, block)) + [n]
    spans = list(itertools.pairwise(edges))
    return [(i0, i1, j0, j1) for bi, (i0, i1) in enumerate(spans) for (j0, j1) in spans[bi:]]


def _tile_pairs(i0: int, i1: int, j0: int, j1: int, sub: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Local pair indices of one tile: all (a, b), or a < b on the diagonal.

    Ordered in ``sub`` x ``sub`` sub-blocks so that each kernel task (16 consecutive pairs)
    touches only a few images, which then stay cached (measured ~10-15% faster at 256 px).
    """
    ni, nj = i1 - i0, j1 - j0
    a, b = np.divmod(np.arange(ni * nj, dtype=np.int64), nj)
    order = np.lexsort((b % sub, a % sub, b // sub, a // sub))
    if i0 == j0:
        order = order[b[order] > a[order]]
    return a[order], b[order]


class _StatsCache:
    """Per-block local means and variances, computed on demand, bounded in bytes."""

    def __init__(self, compute: Callable[[int, int], tuple], max_bytes: int) -> None:
        self._compute = compute
        self._max_bytes = max_bytes
        self._items: OrderedDict[tuple[int, int], tuple] = OrderedDict()
        self._bytes = 0

    def get(self, i0: int, i1: int) -> tuple:
        key = (i0, i1)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = self._compute(i0, i1)
        size = sum(int(v.nbytes) if isinstance(v, np.ndarray) else v.numel() * v.element_size() for v in value)
        # Always keep the two blocks of the current tile; evict least recently used beyond that.
        while self._items and self._bytes + size > self._max_bytes and len(self._items) >= 2:
            _, old = self._items.popitem(last=False)
            self._bytes -= sum(
                int(v.nbytes) if isinstance(v, np.ndarray) else v.numel() * v.element_size() for v in old
            )
        self._items[key] = value
        self._bytes += size
        return value


def nearest_ssim(
    images: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    block: int | None = None,
    engine: str = "auto",
    stats_cache_bytes: int = 1 << 30,
    dist: Any = None,
) -> np.ndarray:
    """Each image's maximum SSIM against all other images of the same set, shape (N,), float64.

    ``images``: canonical (N, 1, H, W) or (N, H, W), N >= 2, H and W >= 11.
    ``engine``: "numba" (CPU kernels), "torch" (batched tiles on ``device``), or "auto" (numba
    on CPU, torch elsewhere). ``block``: images per tile side (default 64 numba, 32 torch).
    ``stats_cache_bytes`` bounds the cached per-block statistics (recomputed when evicted).
    ``dist`` (a ``genbench.distributed.Dist``, every rank calling with the same images): each rank
    runs about 1/K of the pairs and the maxima are combined (exactly) on every rank.
    """
    x = _as_stack(images, "nearest_ssim")
    dev = torch.device(device)
    engine = _resolve_engine(engine, dev, "nearest_ssim")
    n = x.shape[0]
    block = block or (64 if engine == "numba" else 32)
    if block < 1:
        raise UsageError(f"nearest_ssim: block must be >= 1, got {block}")
    best = np.full(n, -np.inf, dtype=np.float64)
    tiles = _tiles(n, block)
    total = n * (n - 1) // 2
    done = 0
    run_tile = _numba_runner(x, x, stats_cache_bytes) if engine == "numba" else _torch_runner(
        x, x, dev, stats_cache_bytes
    )
    weights = [(i1 - i0) * (i1 - i0 - 1) // 2 if i0 == j0 else (i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in tiles]
    tiles, progress, total_here = _share_tiles(tiles, weights, total, progress, dist)
    for i0, i1, j0, j1 in tiles:
        pa, pb = _tile_pairs(i0, i1, j0, j1)
        if pa.size == 0:
            continue
        vals = run_tile(i0, i1, j0, j1, pa, pb)
        # Running maxima: unbuffered so repeated indices are all honoured.
        np.maximum.at(best, pa + i0, vals)
        np.maximum.at(best, pb + j0, vals)
        done += pa.size
        if progress is not None:
            progress(done, total_here)
    return best if dist is None else dist.all_reduce(best, "max")


def _share_tiles(tiles: list[tuple[int, int, int, int]], weights: list[int], total: int,
                 progress: Progress | None, dist: Any) -> tuple[list[tuple[int, int, int, int]], Progress | None, int]:
    """This rank's contiguous run of tiles (about total/K pairs; ``weights``: pairs per tile) under
    ``dist``; progress is shown by rank 0 only, scaled from its own pairs to the whole job's."""
    if dist is None or not dist.enabled:
        return tiles, progress, total
    mine = dist.share(tiles, weights)
    chosen = set(mine)
    here = sum(w for t, w in zip(tiles, weights) if t in chosen) or 1
    if progress is None or not dist.is_main:
        return mine, None, here
    return mine, (lambda done, _here: progress(min(total, done * total // here), total)), here


def _resolve_engine(engine: str, dev: torch.device, who: str) -> str:
    if engine == "auto":
        engine = "numba" if dev.type == "cpu" else "torch"
    if engine not in ("numba", "torch"):
        raise UsageError(f"{who}: engine must be 'auto', 'numba' or 'torch', got {engine!r}")
    if engine == "numba" and dev.type != "cpu":
        raise UsageError(f"{who}: the numba engine runs on the CPU only; use device='cpu'")
    return engine


def _cross_tiles(nq: int, nr: int, block_q: int, block_r: int) -> list[tuple[int, int, int, int]]:
    """Tiles (i0, i1, j0, j1) covering every (query, reference) pair once.

    Query blocks are the outer loop; the reference blocks are swept forwards for even query
    blocks and backwards for odd ones, so that the blocks whose statistics the bounded cache still
    holds (the most recently used) are the first ones needed by the next sweep.
    """
    q_edges = list(itertools.pairwise([*range(0, nq, block_q), nq]))
    r_edges = list(itertools.pairwise([*range(0, nr, block_r), nr]))
    out = []
    for k, (i0, i1) in enumerate(q_edges):
        for j0, j1 in (r_edges if k % 2 == 0 else r_edges[::-1]):
            out.append((i0, i1, j0, j1))
    return out


def _cross_tile_pairs(ni: int, nj: int, sub: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b) of an ni x nj tile, in sub x sub sub-blocks (as ``_tile_pairs`` orders them)."""
    a, b = np.divmod(np.arange(ni * nj, dtype=np.int64), nj)
    order = np.lexsort((b % sub, a % sub, b // sub, a // sub))
    return a[order], b[order]


def nearest_ssim_cross(
    queries: np.ndarray | torch.Tensor,
    refs: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    block: int | None = None,
    query_block: int | None = None,
    engine: str = "auto",
    stats_cache_bytes: int = 1 << 30,
    dist: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query image's maximum SSIM over all reference images, and the index of that image.

    Returns ``(values, index)``: float64 and int64 arrays of shape (N_queries,); on exact ties the
    lowest reference index wins, whatever the tile order. Both sets are canonical (N, 1, H, W) or
    (N, H, W) of one image size, at least one image each. The pair arithmetic is
    ``nearest_ssim``'s (same kernels), so a value equals the within-set engine's for that pair.

    ``block``: reference images per tile (default 64 numba, 32 torch); ``query_block``: query
    images per tile (default 256 numba, 32 torch): one query block's statistics are computed once
    and the reference blocks are swept past it, so the statistics of the reference set are
    recomputed at most once per query block (fewer when ``stats_cache_bytes`` holds them).
    Memory: both sets, one tile, and the bounded statistics cache; never N_q x N_r.
    ``dist`` (a ``genbench.distributed.Dist``, every rank calling with the same images): each rank
    runs about 1/K of the pairs; maxima and their indices (lowest on ties) are combined exactly.
    """
    xq = _as_stack(queries, "nearest_ssim_cross (queries)", min_n=1)
    xr = _as_stack(refs, "nearest_ssim_cross (references)", min_n=1)
    if xq.shape[1:] != xr.shape[1:]:
        raise InputError(f"query images are {xq.shape[1]}x{xq.shape[2]} but reference images are "
                         f"{xr.shape[1]}x{xr.shape[2]}; SSIM needs one size", "nearest_ssim_cross")
    dev = torch.device(device)
    engine = _resolve_engine(engine, dev, "nearest_ssim_cross")
    block = block or (64 if engine == "numba" else 32)
    query_block = query_block or (256 if engine == "numba" else 32)
    if block < 1 or query_block < 1:
        raise UsageError(f"nearest_ssim_cross: block sizes must be >= 1, got {block}, {query_block}")
    nq, nr = xq.shape[0], xr.shape[0]
    best = np.full(nq, -np.inf, dtype=np.float64)
    arg = np.full(nq, -1, dtype=np.int64)
    total, done = nq * nr, 0
    run_tile = (_numba_runner(xq, xr, stats_cache_bytes) if engine == "numba"
                else _torch_runner(xq, xr, dev, stats_cache_bytes))
    pair_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    tiles = _cross_tiles(nq, nr, query_block, block)
    tiles, progress, total_here = _share_tiles(tiles, [(i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in tiles],
                                               total, progress, dist)
    for i0, i1, j0, j1 in tiles:
        shape = (i1 - i0, j1 - j0)
        if shape not in pair_cache:
            pair_cache[shape] = _cross_tile_pairs(*shape)
        pa, pb = pair_cache[shape]
        vals = run_tile(i0, i1, j0, j1, pa, pb)
        tile = np.empty(shape, np.float64)
        tile[pa, pb] = vals
        j = tile.argmax(axis=1)  # first maximum: the lowest index within the tile
        v = tile[np.arange(shape[0]), j]
        cur_v, cur_j = best[i0:i1], arg[i0:i1]
        better = (v > cur_v) | ((v == cur_v) & (j + j0 < cur_j))
        cur_v[better] = v[better]
        cur_j[better] = j[better] + j0
        done += pa.size
        if progress is not None:
            progress(done, total_here)
    if dist is not None and dist.enabled:
        top = dist.all_reduce(best, "max")
        # The lowest index among the ranks that reached the maximum (a rank that never saw a
        # query holds -inf there).
        arg = dist.all_reduce(np.where(best == top, arg, np.iinfo(np.int64).max), "min")
        best = top
    return best, arg


def _caches(xa: Any, xb: Any, compute: Callable[[Any], Callable[[int, int], tuple]],
            cache_bytes: int) -> tuple[_StatsCache, _StatsCache]:
    """Statistics caches for the i side (``xa``) and the j side (``xb``) of the tiles.

    Within one set both sides share one cache. Across two sets the i side (the outer loop: one
    block at a time) keeps only its current block and the j side, swept once per i block, gets
    the whole budget.
    """
    if xa is xb:
        cache = _StatsCache(compute(xa), cache_bytes)
        return cache, cache
    return _StatsCache(compute(xa), 0), _StatsCache(compute(xb), cache_bytes)


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Give torch back its CPU thread count after a numba parallel kernel.

    numba's OpenMP threading layer shares libgomp with torch, and its parallel launch sets the
    process-wide OpenMP thread count to numba's own (every core). Every torch kernel after the
    first nearest-SSIM call then ran on all cores, whatever OMP_NUM_THREADS or
    torch.set_num_threads said; with another process on the cores, spinning OpenMP workers made
    a quick StyleGAN training step in a `genbench run --utility` (trained after a model had been
    evaluated) about 4x slower than in a fresh process on the shared 2-core machine.
    """
    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _numba_runner(xa: np.ndarray, xb: np.ndarray, cache_bytes: int) -> Callable[..., np.ndarray]:
    """Tile runner: SSIM of the pairs (xa[i0 + pa], xb[j0 + pb]); ``xa is xb`` within one set."""
    from genbench.metrics import _kernels

    w64 = gaussian_taps()
    w32 = w64.astype(np.float32)

    def stats_of(x: np.ndarray) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
        def stats(i0: int, i1: int) -> tuple[np.ndarray, np.ndarray]:
            shape = (i1 - i0, x.shape[1] - WIN + 1, x.shape[2] - WIN + 1)
            mu = np.empty(shape, np.float32)
            var = np.empty(shape, np.float32)
            with torch_threads_kept():
                _kernels.image_stats(x[i0:i1], w64, mu, var)
            return mu, var

        return stats

    cache_a, cache_b = _caches(xa, xb, stats_of, cache_bytes)
    out = np.empty(0, np.float64)

    def run(i0: int, i1: int, j0: int, j1: int, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        nonlocal out
        if out.size < pa.size:  # one buffer reused by every tile
            out = np.empty(pa.size, np.float64)
        mui, vari = cache_a.get(i0, i1)
        muj, varj = cache_b.get(j0, j1)
        res = out[: pa.size]
        with torch_threads_kept():
            _kernels.block_pairs(xa[i0:i1], mui, vari, xb[j0:j1], muj, varj, w32, C1, C2, pa, pb, res)
        return res

    return run


def torch_image_stats(x: torch.Tensor, w64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Local mean and variance on the cropped grid, float64 inside, float32 out. x: (n, H, W)."""
    xd = x.to(torch.float64)
    mu = _torch_valid_filter(xd, w64)
    var = _torch_valid_filter(xd * xd, w64) - mu * mu
    return mu.to(torch.float32), var.to(torch.float32)


def _torch_valid_filter(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # Shifted slices instead of conv2d: exact in the tensor's dtype on every device (cuDNN
    # convolutions may use TF32 on GPUs), and summed in the same order as the numba kernel.
    k = w.shape[0]
    wc = x.shape[-1] - k + 1
    hc = x.shape[-2] - k + 1
    h = w[0] * x[..., :, 0:wc]
    for t in range(1, k):
        h = h + w[t] * x[..., :, t : t + wc]
    v = w[0] * h[..., 0:hc, :]
    for t in range(1, k):
        v = v + w[t] * h[..., t : t + hc, :]
    return v


def _torch_runner(xa: np.ndarray, xb: np.ndarray, dev: torch.device, cache_bytes: int,
                  max_pairs: int = 1024) -> Callable[..., np.ndarray]:
    """The numba runner's contract on torch tensors; ``max_pairs`` pairs' maps at a time."""
    ta = torch.from_numpy(xa).to(dev)
    tb = ta if xb is xa else torch.from_numpy(xb).to(dev)
    w64 = torch.from_numpy(gaussian_taps()).to(dev)
    w32 = w64.to(torch.float32)

    def stats_of(t: torch.Tensor) -> Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]:
        return lambda i0, i1: torch_image_stats(t[i0:i1], w64)

    cache_a, cache_b = _caches(ta, tb, stats_of, cache_bytes)

    @torch.inference_mode()
    def run(i0: int, i1: int, j0: int, j1: int, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        mui, vari = cache_a.get(i0, i1)
        muj, varj = cache_b.get(j0, j1)
        out = np.empty(pa.size, np.float64)
        for q0 in range(0, pa.size, max_pairs):
            ia = torch.from_numpy(pa[q0 : q0 + max_pairs]).to(dev)
            ib = torch.from_numpy(pb[q0 : q0 + max_pairs]).to(dev)
            cross = _torch_valid_filter(ta[i0:i1][ia] * tb[j0:j1][ib], w32)
            ma, mb = mui[ia], muj[ib]
            mab = ma * mb
            num = (2 * mab + C1) * (2 * (cross - mab) + C2)
            den = (ma * ma + mb * mb + C1) * (vari[ia] + varj[ib] + C2)
            out[q0 : q0 + ia.numel()] = (num / den).to(torch.float64).mean(dim=(-2, -1)).cpu().numpy()
        return out

    return run


def ssim_matrix(
    images: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    block: int | None = None,
) -> np.ndarray:
    """Every pairwise SSIM within a set, (N, N) float64 with ones on the diagonal.

    The same engine (and values) as :func:`nearest_ssim`, keeping every pair instead of each
    image's maximum; memory is the N x N result (for the Vendi score's SSIM kernel).
    """
    x = _as_stack(images, "ssim_matrix")
    dev = torch.device(device)
    engine = "numba" if dev.type == "cpu" else "torch"
    block = block or (64 if engine == "numba" else 32)
    n = x.shape[0]
    out = np.eye(n, dtype=np.float64)
    total = n * (n - 1) // 2
    done = 0
    run_tile = _numba_runner(x, x, 1 << 30) if engine == "numba" else _torch_runner(x, dev, 1 << 30)
    for i0, i1, j0, j1 in _tiles(n, block):
        pa, pb = _tile_pairs(i0, i1, j0, j1)
        if pa.size == 0:
            continue
        vals = run_tile(i0, i1, j0, j1, pa, pb)
        out[pa + i0, pb + j0] = vals
        out[pb + j0, pa + i0] = vals
        done += pa.size
        if progress is not None:
            progress(done, total)
    return out
