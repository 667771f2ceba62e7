"""Evaluation under ``torchrun`` / ``accelerate launch``: which process am I, and the few collectives
the metrics need.

Launched with K processes, every process runs the same evaluation in lockstep. The expensive
per-image and per-pair work is divided by index, and the pieces are put back together so that
every value equals the single-process one:

- per-image quantities (Inception, backbone and radiomic features): each rank takes a contiguous
  range of rows (aligned to whole batches, so every batch holds exactly the images it holds in
  one process) and :meth:`Dist.gather_rows` concatenates the ranges in rank order, i.e. in input
  order, on every rank;
- nearest-SSIM tiles: each rank takes a contiguous run of tiles holding about 1/K of the pairs
  (:meth:`Dist.share`) and keeps running maxima over its own tiles; :meth:`Dist.all_reduce` with
  ``max`` combines them. A maximum is exact, so the combined maxima equal one process's bit for
  bit;
- bootstrap replicates: :func:`shard_bootstrap` gives each rank a contiguous range of replicate
  numbers; replicate ``i`` draws its indices from ``genbench.stats.replicate_rng(seed, i, stream)``
  whatever rank computes it, and ``genbench.stats.attach_ci`` gathers the ranges in order, so an
  interval does not depend on K.

Everything else (t-SNE, the final statistics of metrics that are not marked ``distributed`` in the
registry) runs on rank 0, which alone prints progress and writes files.

Backends: NCCL when the evaluation runs on CUDA devices, gloo on the CPU (:func:`init_from_env`).
A process group that someone else initialised (Accelerate, a user's script) is used as it is.
Without torchrun's environment (``WORLD_SIZE`` unset or 1) nothing here does anything: every
helper is the identity on one process.

A collective is entered by every rank or by none: code between collectives must take the same
branches on every rank (all ranks hold the same images and options, so it does), or the ranks wait
for each other until torch.distributed's timeout.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genbench.stats import Bootstrap, resample_matrix

__all__ = [
    "LOCAL",
    "BootstrapShard",
    "Dist",
    "current",
    "env_world_size",
    "init_from_env",
    "is_main_process",
    "resolve_device",
    "shard_bootstrap",
]

_REDUCE_OPS = ("max", "min", "sum")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (rank, world size, backend) and the collectives on it.

    ``Dist()`` (:data:`LOCAL`) is one process: every method returns its input.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo", "nccl", ... (None: one process)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """What a report records: how many processes computed it, over which backend."""
        return {"world_size": self.world_size, "dist_backend": self.backend}

    # -- how work is divided ---------------------------------------------------------------

    def bounds(self, n: int, align: int = 1) -> list[tuple[int, int]]:
        """Every rank's contiguous range of ``range(n)``, cut at multiples of ``align`` (a batch
        size) and as even as that allows; rank order is index order."""
        align = max(1, int(align))
        units = -(-n // align)
        cuts = [min(n, (r * units // self.world_size) * align) for r in range(self.world_size + 1)]
        cuts[-1] = n
        return [(cuts[r], cuts[r + 1]) for r in range(self.world_size)]

    def shard(self, n: int, align: int = 1) -> range:
        """This rank's rows of ``range(n)`` (see :meth:`bounds`)."""
        lo, hi = self.bounds(n, align)[self.rank]
        return range(lo, hi)

    def share(self, items: Sequence[Any], weights: Sequence[float] | np.ndarray) -> list[Any]:
        """This rank's contiguous run of ``items``, cut so that every rank gets about the same total
        ``weight`` (e.g. SSIM pairs per tile). An item goes to the rank whose share holds the middle
        of its weight; keeping runs contiguous keeps each rank's cache locality that of one process."""
        if not self.enabled:
            return list(items)
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(items),):
            raise ValueError(f"share: {len(items)} items but {w.shape} weights")
        total = float(w.sum())
        if total <= 0:
            lo, hi = self.bounds(len(items))[self.rank]
            return list(items[lo:hi])
        mid = np.cumsum(w) - w / 2.0
        owner = np.minimum((mid * self.world_size / total).astype(np.int64), self.world_size - 1)
        return [item for item, o in zip(items, owner) if o == self.rank]

    # -- collectives (identity on one process) ------------------------------------------------

    def comm_device(self) -> torch.device:
        """Where tensors must live for this backend's collectives (NCCL: this rank's GPU)."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        a = np.ascontiguousarray(arr)
        if a.dtype == np.bool_:
            a = a.view(np.uint8)
        return torch.from_numpy(a).to(self.comm_device())

    @staticmethod
    def _numpy(t: torch.Tensor, like: np.ndarray) -> np.ndarray:
        out = t.cpu().numpy()
        return out.view(np.bool_) if like.dtype == np.bool_ else out

    def all_reduce(self, arr: np.ndarray, op: str = "max") -> np.ndarray:
        """Element-wise ``op`` ("max", "min", "sum") of ``arr`` over all ranks, on every rank (a new array)."""
        if op not in _REDUCE_OPS:
            raise ValueError(f"all_reduce: op must be one of {_REDUCE_OPS}, got {op!r}")
        arr = np.asarray(arr)
        if not self.enabled:
            return arr.copy()
        import torch.distributed as td

        t = self._tensor(arr).clone()
        td.all_reduce(t, op={"max": td.ReduceOp.MAX, "min": td.ReduceOp.MIN, "sum": td.ReduceOp.SUM}[op])
        return self._numpy(t, arr).reshape(arr.shape)

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (the same answer everywhere)."""
        if not self.enabled:
            return bool(flag)
        return bool(self.all_reduce(np.array([1 if flag else 0], np.int64), "min")[0])

    def gather_rows(self, local: np.ndarray) -> np.ndarray:
        """Every rank's ``local`` rows concatenated in rank order, on every rank.

        Ranks may hold different numbers of rows (zero included); the other dimensions and the
        dtype must agree. Bits are preserved (no conversion besides bool <-> uint8 on the wire).
        """
        local = np.ascontiguousarray(local)
        if not self.enabled:
            return local
        import torch.distributed as td

        lengths = self.gather_objects(int(local.shape[0]))
        tail = local.shape[1:]
        longest = max(lengths)
        buf = torch.zeros((longest, *tail), dtype=self._tensor(local[:0]).dtype, device=self.comm_device())
        if local.shape[0]:
            buf[: local.shape[0]] = self._tensor(local)
        parts = [torch.empty_like(buf) for _ in range(self.world_size)]
        td.all_gather(parts, buf)
        return np.concatenate([self._numpy(p[:m], local) for p, m in zip(parts, lengths)], axis=0)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as td

        out: list[Any] = [None] * self.world_size
        td.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` (picklable), on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as td

        box = [obj if self.rank == src else None]
        td.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as td

            td.barrier()

    # -- rank 0 speaks ----------------------------------------------------------------------

    def progress_scaled(self, advance: Callable[[int], None] | None, total: int) -> Callable[[int], None] | None:
        """Rank 0's ``advance(n)`` for a job split K ways: rank 0 reports its own increments times
        K (capped at ``total``), a fair picture of the whole when the ranks run at one pace; other
        ranks report nothing."""
        if advance is None or not self.enabled:
            return advance if self.is_main else None
        if not self.is_main:
            return None
        state = {"local": 0, "shown": 0}

        def scaled(n: int) -> None:
            state["local"] += n
            shown = min(total, state["local"] * self.world_size)
            if shown > state["shown"]:
                advance(shown - state["shown"])
                state["shown"] = shown

        return scaled


LOCAL = Dist()
"""One process: the identity for every collective."""

_OWNED = False  # whether init_from_env created the process group (then it also destroys it)


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun and ``accelerate launch`` set it (1 when absent)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def current() -> Dist:
    """The job this process is part of: from torch.distributed when a process group is
    initialised, else :data:`LOCAL`."""
    import torch.distributed as td

    if not (td.is_available() and td.is_initialized()):
        return LOCAL
    world = td.get_world_size()
    if world <= 1:
        return LOCAL
    return Dist(rank=td.get_rank(), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                backend=str(td.get_backend()))


def is_main_process() -> bool:
    """Whether this process is rank 0 (or alone). Before any process group exists, torchrun's
    ``RANK`` says, so that a command can decide who prints before the group is joined."""
    job = current()
    if job.enabled:
        return job.is_main
    try:
        return int(os.environ.get("RANK", "0") or 0) == 0
    except ValueError:
        return True


def _wants_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def init_from_env(device: str = "auto", timeout_s: float | None = None) -> Dist:
    """Join the job torchrun / ``accelerate launch`` describe in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and return it.

    Backend: NCCL when ``device`` is (or "auto" resolves to) CUDA, each rank on GPU ``LOCAL_RANK``;
    gloo otherwise. An already initialised process group is used as it is; without the
    environment (one process) this returns :data:`LOCAL` and initialises nothing. On the CPU the
    nearest-SSIM kernels' threads are divided among the ranks of this machine unless
    ``NUMBA_NUM_THREADS`` is set.
    """
    global _OWNED
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        return current()
    if env_world_size() <= 1 or not td.is_available():
        return LOCAL
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = _wants_cuda(device)
    if cuda:
        torch.cuda.set_device(local_rank if device in ("auto", "cuda") else torch.device(device))
    else:
        _divide_cpu_threads()
    kwargs: dict[str, Any] = {"backend": "nccl" if cuda else "gloo"}
    if timeout_s is not None:
        from datetime import timedelta

        kwargs["timeout"] = timedelta(seconds=timeout_s)
    td.init_process_group(**kwargs)
    _OWNED = True
    atexit.register(_shutdown)
    return current()


def _divide_cpu_threads() -> None:
    if "NUMBA_NUM_THREADS" in os.environ:
        return
    try:
        local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    except (ValueError, OSError):
        return
    threads = max(1, cores // local_world)
    import sys

    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)


def _shutdown() -> None:
    global _OWNED
    import torch.distributed as td

    if _OWNED and td.is_initialized():
        td.destroy_process_group()
    _OWNED = False


def resolve_device(device: str | torch.device, dist: Dist | None = None) -> torch.device:
    """``device`` with "auto" resolved (CUDA when available); under a multi-process job a bare
    "cuda" (or "auto") becomes this rank's GPU, ``cuda:LOCAL_RANK``."""
    dist = dist or LOCAL
    text = str(device)
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda" and dist.enabled:
        return torch.device("cuda", dist.local_rank)
    return torch.device(text)


# ---------------------------------------------------------------------------------------------
# Bootstrap replicates split across ranks.


@dataclass(frozen=True)
class BootstrapShard(Bootstrap):
    """This rank's replicates ``start .. start + replicates - 1`` of a ``total``-replicate bootstrap.

    It is used wherever a :class:`genbench.stats.Bootstrap` is: replicate functions see
    ``replicates`` (this rank's count) and draw through :meth:`indices`, which numbers replicates
    globally; ``enabled`` and :meth:`params` describe the whole bootstrap; and
    ``genbench.stats.attach_ci`` calls :meth:`gather_replicates` to put every rank's values back
    together in replicate order.
    """

    start: int = 0
    total: int = 0
    dist: Dist = field(default=LOCAL, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.total > 0

    def indices(self, n: int, stream: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.replicates if stop is None else stop
        return resample_matrix(n, self.seed, range(self.start + start, self.start + stop), stream)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "bootstrap_replicates": self.total}

    def gather_replicates(self, local: np.ndarray) -> np.ndarray:
        local = np.asarray(local, dtype=np.float64)
        if local.shape != (self.replicates,):
            raise ValueError(f"rank {self.dist.rank} computed {local.shape} replicates, expected ({self.replicates},)")
        return self.dist.gather_rows(local)


def shard_bootstrap(boot: Bootstrap | None, dist: Dist | None) -> Bootstrap | None:
    """``boot`` split across the ranks of ``dist`` (``boot`` itself on one process or when off)."""
    if boot is None or dist is None or not dist.enabled or not boot.enabled:
        return boot
    lo, hi = dist.bounds(boot.replicates)[dist.rank]
    return BootstrapShard(replicates=hi - lo, seed=boot.seed, level=boot.level, start=lo,
                          total=boot.replicates, dist=dist)
