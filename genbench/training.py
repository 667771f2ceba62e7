"""The one training engine every generator shares (built on HuggingFace Accelerate).

A model describes *what* to train as a :class:`TrainingTask` (its networks, optimizers,
EMA copies, one optimisation step, and any extra state); :func:`fit_task` owns *how*:

- device placement and mixed precision through Accelerate (``bf16``/``fp16`` on GPU only:
  this project's CPUs have no native bf16 and reduced precision there is slow and inexact);
- distributed data parallel when started by ``accelerate launch`` or ``torchrun``
  (Accelerate reads their environment variables; gloo on CPU, NCCL on GPU);
- a deterministic data order: an endless stream of seeded permutations of the training
  set, addressed by position, so the position alone (saved in checkpoints) restores it;
- randomness that is a pure function of ``(seed, rank, step)``: torch, NumPy and Python RNGs
  are reseeded at the start of every step. Resume is therefore exact without carrying
  generator bytes between machines, and every DDP rank draws its own stream;
- EMA updates after every step;
- periodic atomic checkpoints (weights, optimizer states, EMA weights, grad-scaler state,
  step, data position, the task's extra state), loadable with ``torch.load(weights_only=True)``;
- resume from the newest checkpoint in ``workdir`` that loads (half-written temporary files
  and truncated checkpoints are skipped);
- progress through :mod:`genbench.progress` (one ``train`` step counting optimisation
  steps) and a JSONL loss log (``workdir/losses.jsonl``).

Distributed runs assume ``workdir`` is on a filesystem every rank can read; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from genbench.devices import resolve_device
from genbench.errors import InputError, UsageError
from genbench.identity import engine_identity
from genbench.io.atomic import atomic_write_stream
from genbench.progress import ProgressFactory, Step
from genbench.protocol import FitResult

__all__ = [
    "CHECKPOINT_FORMAT",
    "DataStream",
    "EMATarget",
    "Engine",
    "EngineConfig",
    "MixedPrecision",
    "TrainingTask",
    "fit_task",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "step_seed",
    "update_ema",
]

MixedPrecision = Literal["no", "bf16", "fp16"]
CHECKPOINT_FORMAT = "genbench-checkpoint-1"
LOSS_LOG = "losses.jsonl"
_CKPT_RE = re.compile(r"^ckpt-(\d{8})\.pt$")


# --------------------------------------------------------------------------- configuration


def _role(role: str) -> dict[str, str]:
    return {"role": role}


@dataclass
class EngineConfig:
    """How to train (not what): the loop's knobs, independent of the model.

    ``batch_size`` is per process; the global batch under DDP is ``batch_size * world_size``.
    ``checkpoint_every`` counts optimisation steps (0: only the final checkpoint).
    ``device``: ``None`` picks the GPU when there is one, else the CPU; or any spec
    :func:`genbench.devices.resolve_device` accepts (``cpu``, ``cuda``, ``cuda:N``, ``mps``).
    Each field declares its role (see :mod:`genbench.identity`): training values must match
    for a checkpoint to be resumed, runtime values may change between runs.
    """

    steps: int = field(metadata=_role("training"))
    batch_size: int = field(metadata=_role("training"))
    seed: int = field(default=0, metadata=_role("training"))
    mixed_precision: MixedPrecision = field(default="no", metadata=_role("training"))
    device: str | None = field(default=None, metadata=_role("runtime"))
    checkpoint_every: int = field(default=0, metadata=_role("runtime"))
    keep_checkpoints: int = field(default=2, metadata=_role("runtime"))
    log_every: int = field(default=10, metadata=_role("runtime"))

    def validate(self) -> None:
        if self.steps < 0:
            raise UsageError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise UsageError(
                f"mixed precision must be one of no, bf16, fp16; got {self.mixed_precision!r}"
            )
        resolve_device(self.device, option="device")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1 or self.log_every < 1:
            raise UsageError("checkpoint_every >= 0, keep_checkpoints >= 1, log_every >= 1")


@dataclass
class EMATarget:
    """An exponential moving average of a trained module, kept in ``ema`` (owned by the model).

    After each step: ``ema = decay * ema + (1 - decay) * module`` for floating parameters and
    buffers (other buffers are copied). Before ``start_step`` the EMA copies the weights.
    ``decay`` may be a function of the completed step count (e.g. a warm-up ramp).
    """

    ema: nn.Module
    decay: float | Callable[[int], float] = 0.999
    start_step: int = 0

    def decay_at(self, step: int) -> float:
        d = self.decay(step) if callable(self.decay) else float(self.decay)
        if not 0.0 <= d <= 1.0:
            raise UsageError(f"EMA decay must be in [0, 1], got {d}")
        return 0.0 if step < self.start_step else d


class TrainingTask:
    """What a model trains. Subclass and override; the defaults are no-ops.

    The engine calls, in order: ``modules()`` (once; the networks to train, by name),
    ``build_optimizers(modules)`` (once, after the modules are on the device), then
    ``train_step`` for every step. Inside ``train_step`` use ``engine.module(name)`` for
    forward passes (under DDP it is the synchronising wrapper), ``engine.backward(loss)``
    instead of ``loss.backward()`` (it applies fp16 loss scaling), ``engine.optimizer(name)``
    to step, and ``engine.next_batch()`` for more real batches (e.g. a critic's inner loop).
    Each optimizer's gradients are the step's business: zero them before its backward.
    """

    #: passed to DDP; set True if some parameters get no gradient in a step.
    find_unused_parameters: bool = False

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def build_optimizers(self, modules: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def ema_targets(self) -> dict[str, EMATarget]:
        """Module name -> EMA target. Default: none."""
        return {}

    def train_step(self, batch: torch.Tensor, step: int, engine: Engine) -> dict[str, float]:
        """One optimisation step (``step`` counts from 0); returns losses to log (floats)."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Checkpointed extra state: tensors, numbers, strings, lists and dicts of these."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""


# --------------------------------------------------------------------------- data order


class DataStream:
    """An endless sequence of dataset indices: epoch ``e`` is a permutation seeded by (seed, e).

    Position ``p`` is index ``perm_{p // n}[p % n]``; a checkpoint stores only ``p``.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise InputError("the training set is empty")
        self.n = n
        self.seed = seed
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, 0x5EED, epoch))
            self._perm = torch.randperm(self.n, generator=g)
            self._epoch = epoch
        return self._perm

    def take(self, start: int, count: int) -> torch.Tensor:
        out = torch.empty(count, dtype=torch.long)
        i = 0
        while i < count:
            pos = start + i
            epoch, offset = divmod(pos, self.n)
            k = min(count - i, self.n - offset)
            out[i : i + k] = self._permutation(epoch)[offset : offset + k]
            i += k
        return out


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    digest = hashlib.blake2b(
        b"".join(int(v).to_bytes(8, "little", signed=True) for v in values), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed the engine gives torch/NumPy/random at the start of ``step`` on ``rank``."""
    return _mix(seed, rank, step)


def _reseed(value: int) -> None:
    torch.manual_seed(value)  # also seeds every CUDA device
    np.random.seed(value % (2**32))
    random.seed(value)


# --------------------------------------------------------------------------- EMA


@torch.no_grad()
def update_ema(ema: nn.Module, module: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * module`` (floating tensors); other buffers copied."""
    src = module.state_dict()
    for name, t in ema.state_dict().items():
        s = src[name].detach()
        if t.dtype.is_floating_point:
            if decay == 0.0:
                t.copy_(s)
            else:
                t.lerp_(s.to(t.dtype), 1.0 - decay)
        else:
            t.copy_(s)


# --------------------------------------------------------------------------- checkpoints


def list_checkpoints(workdir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the final-named checkpoints in ``workdir``, oldest first.

    Temporary files of an interrupted write (``.ckpt-*.tmp``) never match.
    """
    folder = Path(workdir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); InputError if it is not one of ours."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        raise InputError(f"not a readable checkpoint ({type(exc).__name__}: {exc})", str(path))
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"not a genbench checkpoint (format {CHECKPOINT_FORMAT})", str(path))
    return state


def latest_checkpoint(workdir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``workdir`` that loads, or None; unreadable ones are skipped
    with a warning (a crash can leave a truncated file only if the filesystem lied about fsync,
    but a copied or hand-edited folder can)."""
    for _, path in reversed(list_checkpoints(workdir)):
        try:
            return path, load_checkpoint(path)
        except InputError as exc:
            warnings.warn(f"skipping checkpoint: {exc}", stacklevel=2)
    return None


def _cpu_state(sd: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.detach().to("cpu").clone()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(conv(x) for x in v)
        return v

    return conv(sd)


# --------------------------------------------------------------------------- engine


def _build_accelerator(cfg: EngineConfig, find_unused: bool) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(cfg.device, option="device")
    if world > 1 and ":" in device:
        raise UsageError(f"device {device!r} names one GPU, but under a distributed launch each "
                         "process gets its own: use device 'cuda'")
    on_cpu = device == "cpu"
    if cfg.mixed_precision != "no" and on_cpu:
        raise UsageError(
            f"mixed precision {cfg.mixed_precision!r} is for GPUs only: this CPU has no native "
            "bf16/fp16 arithmetic (emulated reduced precision is slower and less exact); "
            "use --mixed-precision no on CPU"
        )
    if cfg.mixed_precision == "bf16" and not on_cpu and not torch.cuda.is_bf16_supported():
        raise UsageError("mixed precision 'bf16' needs a GPU with bf16 support; try fp16")
    if world == 1:
        # Accelerate keeps one process-wide state; a single process may fit several models
        # with different settings, so start each fit from a clean state.
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(
        cpu=on_cpu,
        mixed_precision=cfg.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)],
        step_scheduler_with_optimizer=False,
    )


class Engine:
    """The running loop as a ``train_step`` sees it.

    Attributes: ``config`` (:class:`EngineConfig`), ``accelerator``, ``device``, ``rank``,
    ``world_size``, ``is_main``, ``step`` (the step being run, from 0).
    """

    def __init__(self, task: TrainingTask, data: torch.Tensor, config: EngineConfig) -> None:
        config.validate()
        self.config = config
        self.task = task
        self.accelerator = _build_accelerator(config, task.find_unused_parameters)
        self.device: torch.device = self.accelerator.device
        self.rank: int = self.accelerator.process_index
        self.world_size: int = self.accelerator.num_processes
        self.is_main: bool = self.accelerator.is_main_process
        self.step = 0
        self.data_position = 0  # global stream position (samples), identical on every rank
        self._data = data
        self._stream = DataStream(len(data), config.seed)

        raw = task.modules()
        if not raw:
            raise UsageError("a TrainingTask must train at least one module")
        for m in raw.values():
            m.to(self.device)
        self._raw: dict[str, nn.Module] = dict(raw)
        opts = task.build_optimizers(self._raw)
        names_m, names_o = list(self._raw), list(opts)
        prepared = self.accelerator.prepare(*[self._raw[n] for n in names_m], *[opts[n] for n in names_o])
        if not isinstance(prepared, (tuple, list)):
            prepared = (prepared,)
        self._wrapped = dict(zip(names_m, prepared[: len(names_m)]))
        self._opts = dict(zip(names_o, prepared[len(names_m) :]))
        self._raw_opts = opts
        self._ema = task.ema_targets()
        for name, target in self._ema.items():
            if name not in self._raw:
                raise UsageError(f"EMA target {name!r} is not one of the task's modules")
            target.ema.to(self.device)
            target.ema.requires_grad_(False)

    # -- what train_step uses ---------------------------------------------------------------

    def module(self, name: str) -> nn.Module:
        """The module to run forward passes through (the DDP wrapper under DDP)."""
        return self._wrapped[name]

    def unwrap(self, name: str) -> nn.Module:
        """The plain module (for reading weights, building EMA, calling its own methods)."""
        return self._raw[name]

    def optimizer(self, name: str) -> torch.optim.Optimizer:
        """The prepared optimizer (steps through the grad scaler under fp16)."""
        return self._opts[name]

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """``loss.backward()`` with fp16 loss scaling when active."""
        self.accelerator.backward(loss, **kwargs)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed-precision autocast for code outside a prepared module's forward."""
        return self.accelerator.autocast()

    def clip_grad_norm(self, name: str, max_norm: float) -> float:
        """Clip the gradient norm of a module (unscaling fp16 gradients first)."""
        return float(self.accelerator.clip_grad_norm_(self._raw[name].parameters(), max_norm))

    def next_batch(self) -> torch.Tensor:
        """This rank's next real batch (``batch_size`` samples) from the deterministic stream."""
        b, w = self.config.batch_size, self.world_size
        idx = self._stream.take(self.data_position + self.rank * b, b)
        self.data_position += b * w
        return self._data[idx].to(self.device, non_blocking=True)

    # -- state ------------------------------------------------------------------------------

    def state_dict(self, identity: dict[str, Any]) -> dict[str, Any]:
        scaler = self.accelerator.scaler
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "data_position": self.data_position,
            "seed": self.config.seed,
            "batch_size": self.config.batch_size,
            "engine": json.dumps(engine_identity(self.config), sort_keys=True),
            "world_size": self.world_size,
            "identity": json.dumps(identity, sort_keys=True, default=str),
            "modules": {n: _cpu_state(m.state_dict()) for n, m in self._raw.items()},
            "optimizers": {n: _cpu_state(o.state_dict()) for n, o in self._raw_opts.items()},
            "ema": {n: _cpu_state(t.ema.state_dict()) for n, t in self._ema.items()},
            "scaler": _cpu_state(scaler.state_dict()) if scaler is not None else {},
            "extra": _cpu_state(self.task.extra_state()),
        }

    def load_state_dict(self, state: dict[str, Any], path: Path, identity: dict[str, Any]) -> None:
        want = json.dumps(identity, sort_keys=True, default=str)
        if state.get("identity") != want:
            raise InputError(
                "checkpoint was written for a different model configuration "
                f"({_first_difference(state.get('identity'), want)}); "
                "use a fresh workdir or the original settings",
                str(path),
            )
        mine = engine_identity(self.config)
        # Checkpoints from before the engine stored its identity carry seed and batch size.
        theirs = json.loads(state["engine"]) if "engine" in state else {
            k: state[k] for k in ("seed", "batch_size") if k in state}
        differ = [k for k in sorted(theirs) if theirs[k] != mine.get(k)]
        if differ:
            have = ", ".join(f"{k}={theirs[k]!r}" for k in differ)
            asked = ", ".join(f"{k}={mine.get(k)!r}" for k in differ)
            raise InputError(f"checkpoint has {have}; this fit asks for {asked}", str(path))
        if state["world_size"] != self.world_size and self.is_main:
            warnings.warn(
                f"{path}: resuming a {state['world_size']}-process run on {self.world_size} "
                "processes; the data order continues but batches split differently",
                stacklevel=2,
            )
        for n, m in self._raw.items():
            m.load_state_dict(state["modules"][n])
        for n, o in self._raw_opts.items():
            o.load_state_dict(state["optimizers"][n])
        for n, t in self._ema.items():
            t.ema.load_state_dict(state["ema"][n])
        if self.accelerator.scaler is not None and state["scaler"]:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        self.task.load_extra_state(state["extra"])
        self.step = int(state["step"])
        self.data_position = int(state["data_position"])

    def _update_ema(self) -> None:
        for n, t in self._ema.items():
            update_ema(t.ema, self._raw[n], t.decay_at(self.step))

    def _reduce(self, losses: dict[str, float]) -> dict[str, float]:
        if self.world_size == 1 or not losses:
            return {k: float(v) for k, v in losses.items()}
        keys = sorted(losses)
        t = torch.tensor([float(losses[k]) for k in keys], device=self.device, dtype=torch.float64)
        t = self.accelerator.reduce(t, reduction="mean")
        return dict(zip(keys, t.tolist()))


def _first_difference(have: str | None, want: str) -> str:
    try:
        a, b = json.loads(have or "{}"), json.loads(want)
    except json.JSONDecodeError:
        return "unreadable identity"
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"{k}: checkpoint {a.get(k)!r}, now {b.get(k)!r}"
    return "identity differs"


# --------------------------------------------------------------------------- loss log


def _read_log(path: Path, upto: int) -> list[dict[str, float]]:
    """Entries with step <= upto; a torn last line (crash mid-append) is dropped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get("step", math.inf) <= upto:
            out.append(row)
    return out


def _rewrite_log(path: Path, rows: list[dict[str, float]]) -> None:
    from genbench.io.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# --------------------------------------------------------------------------- the loop


def fit_task(
    task: TrainingTask,
    data: torch.Tensor,
    config: EngineConfig,
    *,
    workdir: Path | None = None,
    progress: ProgressFactory | None = None,
    identity: dict[str, Any] | None = None,
    resume: bool = True,
) -> FitResult:
    """Train ``task`` on ``data`` (an (N, ...) tensor; batches are rows) to ``config.steps``.

    With ``workdir``: checkpoints go to ``workdir/checkpoints/ckpt-<step>.pt`` (atomically,
    every ``config.checkpoint_every`` steps and at the end; the newest ``keep_checkpoints``
    are kept), losses to ``workdir/losses.jsonl``, and with ``resume`` a run continues from
    the newest loadable checkpoint (whose ``identity`` -- the model's resolved config -- must
    match). A checkpoint at or past ``config.steps`` is loaded and no step is run.
    ``progress`` (a :mod:`genbench.progress` factory) gets one ``train`` step counting the
    optimisation steps, on the main process only.
    Returns :class:`genbench.protocol.FitResult` (losses every ``log_every`` steps, averaged
    over processes).
    """
    identity = dict(identity or {})
    with _device_scope(config):
        return _fit(task, data, config, workdir, progress, identity, resume)


def _device_scope(config: EngineConfig) -> contextlib.AbstractContextManager[Any]:
    """``cuda:N``: make GPU N the current device for the fit. Accelerate places a single
    process on the *current* CUDA device, so this is how a chosen GPU is honoured without
    changing the process-wide default for the code that runs after the fit."""
    device = resolve_device(config.device, option="device")
    if device.startswith("cuda:"):
        return torch.cuda.device(int(device.split(":")[1]))
    return contextlib.nullcontext()


def _fit(task: TrainingTask, data: torch.Tensor, config: EngineConfig, workdir: Path | None,
         progress: ProgressFactory | None, identity: dict[str, Any], resume: bool) -> FitResult:
    engine = Engine(task, data, config)
    history: list[dict[str, float]] = []
    resumed_from: int | None = None
    log_path = Path(workdir) / LOSS_LOG if workdir is not None else None

    if workdir is not None and resume:
        found = latest_checkpoint(Path(workdir))
        if found is not None:
            path, state = found
            engine.load_state_dict(state, path, identity)
            resumed_from = engine.step
    if log_path is not None and engine.is_main:
        history = _read_log(log_path, engine.step) if resumed_from is not None else []
        _rewrite_log(log_path, history)

    def save() -> None:
        if workdir is None:
            return
        if engine.is_main:
            target = Path(workdir) / "checkpoints" / f"ckpt-{engine.step:08d}.pt"
            state = engine.state_dict(identity)
            atomic_write_stream(target, lambda fh: torch.save(state, fh))
            for _, old in list_checkpoints(Path(workdir))[: -config.keep_checkpoints]:
                old.unlink(missing_ok=True)
        engine.accelerator.wait_for_everyone()

    for m in engine._raw.values():
        m.train()
    total = config.steps
    log_fh = open(log_path, "a", encoding="utf-8") if (log_path and engine.is_main) else None
    bar = Step(progress if engine.is_main else None, "train", total)
    bar.absolute(engine.step, total)  # a resumed fit starts where its checkpoint stopped
    try:
        while engine.step < total:
            _reseed(step_seed(config.seed, engine.rank, engine.step))
            batch = engine.next_batch()
            losses = task.train_step(batch, engine.step, engine)
            engine.step += 1
            engine._update_ema()
            if engine.step % config.log_every == 0 or engine.step == total:
                row = {"step": engine.step, **engine._reduce(losses)}
                if engine.is_main:
                    history.append(row)
                    if log_fh is not None:
                        log_fh.write(json.dumps(row) + "\n")
                        log_fh.flush()
            bar(1)
            if config.checkpoint_every and engine.step % config.checkpoint_every == 0:
                if engine.step != total:
                    save()
        if resumed_from is None or resumed_from < total:
            save()
        bar.__exit__(None, None, None)
    finally:
        if log_fh is not None:
            log_fh.close()
    for m in engine._raw.values():
        m.eval()
    return FitResult(steps=engine.step, history=history, resumed_from=resumed_from)


def iter_modules(task: TrainingTask) -> Iterator[tuple[str, nn.Module]]:
    """Convenience for models: the task's modules and EMA copies, EMA under ``ema.<name>``."""
    yield from task.modules().items()
    for n, t in task.ema_targets().items():
        yield f"ema.{n}", t.ema
