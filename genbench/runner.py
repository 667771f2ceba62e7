"""The ``genbench run`` pipeline: prepare data -> per model train, sample, evaluate -> tables.

Layout under ``<out>/<dataset>/<preset>/``::

    data.json                 what was prepared (description, source, fingerprint, sizes)
    real_preview.npz          a few held-out real images (for figures and the HTML report)
    floor/metrics.json        the real-vs-real floor (two halves of the held-out set)
    <model>/config.json       the model's resolved config
    <model>/checkpoints/      the engine's resumable checkpoints + final.safetensors
    <model>/losses.jsonl      the engine's loss history
    <model>/samples/          PNG samples (16-bit for CT/MRI)
    <model>/samples.npz       the same samples, float32 canonical
    <model>/metrics.json      ``genbench metrics --json`` schema
    <model>/fds_embedding.npz the joint t-SNE coordinates behind FDS (real rows first)
    results.json, table.csv, table.md, table.tex, figures/

Every stage is recorded in ``.stages/`` (see ``genbench.stages``) with a content hash of its
inputs, so a rerun skips finished stages, a changed input reruns only what depends on it, and a
kill at any moment loses at most the current stage's unsaved work (training resumes from the
engine's newest checkpoint; sampling from its newest finished chunk).
"""

from __future__ import annotations

import dataclasses
import io
import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

import genbench
from genbench.errors import GenbenchError, InputError, UsageError, WeightsUnavailableError
from genbench.imageset import ImageSet
from genbench.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from genbench.metrics.registry import REGISTRY
from genbench.stages import StageRecord, StageStore, content_key, file_sha256

RESULTS_SCHEMA = "genbench.results/1"

# Defaults that depend on the preset: the image size (the image count is the data preset's).
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {"size": 32},
    "paper": {"size": 256},
}
# Config keys that never change what a model learns: they stay out of the training stage key.
RUNTIME_KEYS = frozenset({"device", "sample_batch_size", "checkpoint_every", "log_every"})
SAMPLE_CHUNK = 256  # samples are drawn and saved in chunks, so sampling resumes too
FINAL_WEIGHTS = "checkpoints/final.safetensors"
PREVIEW_N = 16
# Modalities stored as 8-bit PNGs; CT (HU windows) and MRI need 16 bits.
EIGHT_BIT_MODALITIES = frozenset({"x-ray"})


@dataclass
class RunConfig:
    """Everything ``genbench run`` needs; ``None`` means "the preset's default"."""

    dataset: str
    models: list[str] = field(default_factory=lambda: ["all"])
    preset: str = "quick"
    data_dir: Path | None = None
    out: Path = Path("runs")
    device: str | None = None
    size: int | None = None
    n_images: int | None = None
    n_samples: int | None = None
    seed: int = 0
    force: bool = False
    inception_weights: Path | None = None
    steps: int | None = None
    metrics: tuple[str, ...] = field(default_factory=REGISTRY.default_names)
    overrides: dict[str, Any] = field(default_factory=dict)
    figures: bool = True
    fds_seeds: int | None = None  # t-SNE repeats for FDS (None: the metrics default, 3)
    eval_options: dict[str, Any] = field(default_factory=dict)  # further EvalOptions fields (--kid-subset-size...)

    @property
    def root(self) -> Path:
        return Path(self.out) / self.dataset / self.preset


# --------------------------------------------------------------------------- small helpers


def resolve_models(requested: list[str]) -> list[str]:
    """``all`` or a list of registered names (order kept); unknown names list what is installed."""
    from genbench.protocol import available_generators

    installed = available_generators()
    names: list[str] = []
    for item in requested:
        for name in (s.strip() for s in item.split(",")):
            if not name:
                continue
            if name == "all":
                from genbench.report.tables import MODEL_ORDER

                names.extend(sorted(installed, key=lambda n: (
                    MODEL_ORDER.index(n) if n in MODEL_ORDER else len(MODEL_ORDER), n)))
            elif name not in installed:
                have = ", ".join(installed) or "none"
                raise UsageError(f"unknown model {name!r}; installed generators: {have}")
            else:
                names.append(name)
    names = list(dict.fromkeys(names))
    if not names:
        raise UsageError("no models selected (use --models all or a comma list)")
    return names


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON where possible (numbers, true, null)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"genbench": genbench.__version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "torch-fidelity", "openTSNE", "scikit-image", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    out["cuda"] = torch.version.cuda or "none"
    return out


def _config_dict(gen: Any) -> dict[str, Any]:
    cfg = getattr(gen, "config", None)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return {}


def _clear_dir(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)


def load_npz_images(path: Path) -> torch.Tensor:
    with np.load(path, allow_pickle=False) as z:
        arr = z["images"]
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return x[:, None] if x.ndim == 3 else x


def save_array_npz(path: Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- progress


class Reporter:
    """Stage messages and progress bars (bars only on a terminal; plain lines otherwise)."""

    def __init__(self, console: Any = None, quiet: bool = False) -> None:
        from rich.console import Console

        from genbench.distributed import is_main_process

        self.console = console or Console(stderr=True)
        self.main = is_main_process()  # under torchrun only rank 0 speaks
        self.quiet = quiet or not self.main
        self._notices: set[str] = set()

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True)

    def notice(self, text: str) -> None:
        """A message printed at most once per run (e.g. missing weights)."""
        if text not in self._notices and self.main:
            self._notices.add(text)
            self.console.print(f"[bold yellow]notice:[/] {text}", highlight=False, soft_wrap=True)

    def bar(self, description: str, total: int | None) -> _Bar:
        return _Bar(self, description, total)


class _Bar:
    def __init__(self, reporter: Reporter, description: str, total: int | None) -> None:
        self.reporter = reporter
        self.description = description
        self.total = total
        self._progress: Any = None
        self._task: Any = None
        self._t0 = time.time()
        self._last_decile = 0

    def __enter__(self) -> Self:
        if self.reporter.quiet or not self.reporter.console.is_terminal:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.reporter.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def update(self, completed: int, total: int | None = None, note: str = "") -> None:
        total = total or self.total
        if self._progress is None:
            # No terminal (CI logs, nohup): a plain line every 10% with an ETA instead of a bar.
            if self.reporter.quiet or not total:
                return
            decile = int(10 * completed / total)
            if decile > self._last_decile and completed < total:
                self._last_decile = decile
                spent = time.time() - self._t0
                eta = spent * (total - completed) / max(completed, 1)
                self.reporter.say(f"{self.description}: {completed}/{total} "
                                  f"({100 * completed // total}%), ETA {eta:.0f} s {note}".rstrip())
            return
        if self._progress is not None:
            desc = f"{self.description} {note}".rstrip()
            self._progress.update(self._task, completed=completed, total=total or self.total,
                                  description=desc)

    def subtasks(self, description: str, total: int | None) -> Any:
        """A ``ProgressFactory`` for the metrics pipeline: each of its steps gets its own bar."""
        if self._progress is None:
            return lambda n, total=None: None
        progress = self._progress
        task = progress.add_task(f"  {description}", total=total)

        def advance(n: int, total: int | None = None) -> None:
            if total is not None:
                progress.update(task, total=total)
            progress.advance(task, n)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# --------------------------------------------------------------------------- evaluation adapter


@dataclass
class EvalSettings:
    metrics: tuple[str, ...]
    weights: Path | None  # None: Inception metrics are unavailable (notice printed)
    weights_sha256: str | None
    device: str
    seed: int
    fds_seeds: int | None
    extra: dict[str, Any] = field(default_factory=dict)  # further EvalOptions fields

    def identity(self) -> dict[str, Any]:
        # Device and cache location do not change the values; everything else here does.
        return {
            "metrics": sorted(self.metrics),
            "inception_weights": self.weights_sha256,
            "seed": self.seed,
            "fds_seeds": self.fds_seeds,
            **{k: str(v) for k, v in sorted(self.extra.items()) if k != "batch_size"},
        }

    def options(self, cache_dir: Path | None) -> Any:
        from genbench.metrics.pipeline import EvalOptions

        kwargs: dict[str, Any] = {
            "metrics": self.metrics,
            "inception_weights": self.weights,
            "device": self.device,
            "seed": self.seed,
            "cache_dir": cache_dir,
        }
        if self.fds_seeds is not None:
            kwargs["fds_seeds"] = self.fds_seeds
        return EvalOptions(**{**self.extra, **kwargs})




# --------------------------------------------------------------------------- the runner


@dataclass
class ModelOutcome:
    name: str
    entry: dict[str, Any]
    error: str | None = None


class Runner:
    def __init__(self, cfg: RunConfig, reporter: Reporter | None = None) -> None:
        if cfg.preset not in PRESET_DEFAULTS:
            raise UsageError(
                f"unknown preset {cfg.preset!r}; choose one of {', '.join(PRESET_DEFAULTS)}"
            )
        cfg.metrics = REGISTRY.parse(cfg.metrics)
        if cfg.device not in (None, "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
            raise UsageError(f"--device must be cpu or cuda, got {cfg.device!r}")
        if cfg.device and cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but no CUDA GPU is available")
        if cfg.steps is not None and cfg.steps < 1:
            raise UsageError("--steps must be at least 1")
        if cfg.n_samples is not None and cfg.n_samples < 2:
            raise UsageError("--n-samples must be at least 2")
        self.cfg = cfg
        self.say = reporter or Reporter()
        defaults = PRESET_DEFAULTS[cfg.preset]
        self.size = cfg.size or defaults["size"]
        self.n_images = cfg.n_images
        self.root = cfg.root
        self.models = resolve_models(cfg.models)
        from genbench.protocol import available_generators

        installed = available_generators()
        for key in cfg.overrides:
            model, dot, _ = key.rpartition(".")
            if dot and model not in installed:
                raise UsageError(
                    f"--set {key}: {model!r} is not an installed generator "
                    f"({', '.join(installed)})"
                )

    # -- setup -------------------------------------------------------------------------------

    def _prepare_data(self) -> Any:
        from genbench.data import prepare_dataset

        t0 = time.time()
        kwargs: dict[str, Any] = {
            "data_dir": self.cfg.data_dir,
            "size": self.size,
            "n": self.n_images,
            "seed": self.cfg.seed,
            "cache_dir": Path(self.cfg.out) / ".cache" / "data",
        }
        with self.say.bar(f"{self.cfg.dataset}: prepare data", None):
            data = prepare_dataset(self.cfg.dataset, **kwargs)
        self.say.say(
            f"data: {data.description} — {len(data.train)} train / {len(data.test)} held-out "
            f"images at {self.size}px ({time.time() - t0:.1f} s)"
        )
        if len(data.test) < 4:
            raise UsageError(
                f"the held-out set has only {len(data.test)} images; metrics need more "
                "(raise --n-images or add data)"
            )
        return data

    def _resolve_weights(self) -> tuple[Path | None, str | None]:
        if not set(REGISTRY.of_family("inception")) & set(self.cfg.metrics):
            return None, None
        from genbench.metrics.inception import resolve_inception_weights

        given = self.cfg.inception_weights
        if given is not None and not Path(given).expanduser().is_file():
            # An explicit path that is wrong is a typo to fix, not a reason to skip metrics.
            raise InputError("--inception-weights: no such file", str(given))
        try:
            path = Path(resolve_inception_weights(self.cfg.inception_weights))
        except WeightsUnavailableError as exc:
            self.say.notice(
                f"Inception-v3 weights not available, so IS, FID, KID, precision and recall "
                f"will read n/a (FDS and DS are still computed). {exc}"
            )
            return None, None
        return path, file_sha256(path)

    def _eval_device(self) -> str:
        if self.cfg.device:
            return self.cfg.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def overrides_for(self, name: str) -> dict[str, Any]:
        """``key=value`` applies to every model, ``model.key=value`` to that model only."""
        out: dict[str, Any] = {}
        for key, value in self.cfg.overrides.items():
            model, dot, option = key.rpartition(".")
            if not dot:
                out[key] = value
            elif model == name:
                out[option] = value
        return out

    def _bit_depth(self) -> int:
        from genbench.data.presets import get_preset

        modality = str(get_preset(self.cfg.dataset).modality).lower()
        return 8 if modality in EIGHT_BIT_MODALITIES else 16

    def _create(self, name: str) -> Any:
        from genbench.protocol import create_generator

        overrides = self.overrides_for(name)
        if self.cfg.device:
            overrides["device"] = self.cfg.device
        return create_generator(name, self.cfg.preset, self.size, **overrides)

    # -- stages ------------------------------------------------------------------------------

    def _floor_stage(self, test: ImageSet, data_key: str, settings: EvalSettings) -> dict | None:
        folder = self.root / "floor"
        store = StageStore(folder)
        key = content_key(stage="floor", data=data_key, test=test.sha256(),
                          eval=settings.identity())
        if _from_main(not self.cfg.force and store.done("floor", key) is not None):
            self.say.say("floor: done (cached)")
            return json.loads((folder / "metrics.json").read_text())
        t0 = time.time()
        from genbench.metrics.pipeline import floor

        with self.say.bar("real-vs-real floor: evaluate", None) as bar:
            report = floor(test, settings.options(self._cache_dir()), progress=bar.subtasks)
        obj = report.to_json()
        if self.say.main:  # under torchrun every rank has the report; rank 0 writes it
            out = atomic_write_json(folder / "metrics.json", obj)
            if self._record_unless_failed("floor", obj):
                store.complete("floor", key, [out], started=t0)
        _barrier()
        self.say.say(f"floor: evaluated in {time.time() - t0:.1f} s")
        return obj

    def _record_unless_failed(self, who: str, metrics_json: dict) -> bool:
        """A metric that crashed is not a result to keep: leave the stage open for a rerun."""
        failed = {m: e.get("reason") for m, e in (metrics_json.get("metrics") or {}).items()
                  if e.get("status") == "failed"}
        for m, reason in failed.items():
            self.say.console.print(f"[bold red]{who}: {m} failed:[/] {reason} (rerun to retry)",
                                   highlight=False, soft_wrap=True)
        return not failed

    def _cache_dir(self) -> Path:
        return Path(self.cfg.out) / ".cache" / "features"

    def _train_stage(self, name: str, gen: Any, train: ImageSet, data_key: str,
                     store: StageStore, mdir: Path) -> tuple[StageRecord, bool]:
        config = _config_dict(gen)
        learned = {k: v for k, v in config.items() if k not in RUNTIME_KEYS and k != "steps"}
        steps = self.cfg.steps if self.cfg.steps is not None else config.get("steps")
        key = content_key(stage="train", model=name, preset=self.cfg.preset, data=data_key,
                          config=learned, steps=steps, seed=self.cfg.seed)
        rec = None if self.cfg.force else store.done("train", key)
        if rec is not None:
            self.say.say(f"{name}: train done (cached, {rec.info.get('steps')} steps)")
            return rec, False
        store.invalidate("train")
        # Checkpoints of another config/dataset/seed/length cannot be resumed: start afresh.
        # (Steps count too: schedules such as PGGAN's growth depend on the total.)
        compat = content_key(model=name, data=data_key, config=learned, seed=self.cfg.seed,
                             steps=steps)
        state_path = mdir / "train_state.json"
        old = json.loads(state_path.read_text()) if state_path.is_file() else {}
        from genbench.training import list_checkpoints

        ckpts = list_checkpoints(mdir)
        if self.cfg.force or old.get("compat") != compat:
            if ckpts or (mdir / "losses.jsonl").exists():
                self.say.say(f"{name}: discarding checkpoints of a different configuration")
            _clear_dir(mdir / "checkpoints")
            (mdir / "losses.jsonl").unlink(missing_ok=True)
        atomic_write_json(state_path, {"compat": compat, "steps": steps})

        t0 = time.time()
        with self.say.bar(f"{name}: train", steps) as bar:
            def progress(done: int, total: int, losses: dict[str, float]) -> None:
                note = " ".join(f"{k}={v:.4g}" for k, v in list(losses.items())[:3])
                bar.update(done, total, note)

            result = gen.fit(train, workdir=mdir, steps=steps, seed=self.cfg.seed,
                             progress=progress)
        final = mdir / FINAL_WEIGHTS
        gen.save(final)
        info = {
            "steps": int(result.steps),
            "resumed_from": result.resumed_from,
            "num_parameters": int(gen.num_parameters()),
            "train_seconds_this_run": round(time.time() - t0, 2),
        }
        rec = store.complete("train", key, [final], started=t0, info=info)
        resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
        self.say.say(f"{name}: trained {result.steps} steps in {time.time() - t0:.1f} s{resumed}")
        return rec, True

    def _sample_stage(self, name: str, gen: Any, loaded: bool, n: int, train_rec: StageRecord,
                      store: StageStore, mdir: Path) -> StageRecord:
        bit_depth = self._bit_depth()
        key = content_key(stage="sample", train=train_rec.output_hash, n=n, seed=self.cfg.seed,
                          chunk=SAMPLE_CHUNK, bit_depth=bit_depth)
        if not self.say.main:
            # Under torchrun rank 0 samples (or finds them cached) and writes; the others use its
            # record: their own weights file hash need not be rank 0's (DDP runs have ended with
            # ranks differing in the last bits), and every rank must score the same images.
            _barrier()
            rec = store.read("sample")
            if rec is None:
                raise GenbenchError(f"{name}: rank 0 did not finish sampling (see its error)")
            return rec
        try:
            rec = None if self.cfg.force else store.done("sample", key)
            if rec is not None:
                self.say.say(f"{name}: sample done (cached, {n} images)")
                return rec
            return self._sample_on_main(name, gen, loaded, n, key, bit_depth, store, mdir)
        finally:
            _barrier()

    def _sample_on_main(self, name: str, gen: Any, loaded: bool, n: int, key: str, bit_depth: int,
                        store: StageStore, mdir: Path) -> StageRecord:
        store.invalidate("sample")
        if not loaded:
            gen.load(mdir / FINAL_WEIGHTS)
        parts_root = mdir / ".sample_parts"
        parts = parts_root / key[:16]
        for stale in parts_root.glob("*"):
            if stale != parts:
                _clear_dir(stale)
        if self.cfg.force:
            _clear_dir(parts)
        parts.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        chunks = []
        n_chunks = (n + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK
        with self.say.bar(f"{name}: sample", n) as bar:
            for i in range(n_chunks):
                k = min(SAMPLE_CHUNK, n - i * SAMPLE_CHUNK)
                path = parts / f"part-{i:05d}.npy"
                x = None
                if path.is_file():
                    try:
                        x = torch.from_numpy(np.load(path, allow_pickle=False))
                    except (ValueError, OSError):
                        x = None
                if x is None or tuple(x.shape[:1]) != (k,):
                    # Each chunk has its own seed so a resumed run draws the same images.
                    x = gen.sample(k, seed=self.cfg.seed * 1_000_003 + i)
                    buf = io.BytesIO()
                    np.save(buf, x.numpy().astype(np.float32))
                    atomic_write_bytes(path, buf.getvalue())
                chunks.append(x)
                bar.update(min(n, (i + 1) * SAMPLE_CHUNK))
        images = torch.cat(chunks).float().clamp(-1, 1)
        from genbench.io import write_npz, write_png_folder

        npz = write_npz(images, mdir / "samples.npz", overwrite=True, model=name,
                        seed=self.cfg.seed, dataset=self.cfg.dataset)
        _clear_dir(mdir / "samples")
        pngs = write_png_folder(images, mdir / "samples", bit_depth=bit_depth, prefix="sample",
                                overwrite=True)
        rec = store.complete("sample", key, [npz, *pngs], started=t0,
                             info={"n": n, "bit_depth": bit_depth})
        _clear_dir(parts_root)
        self.say.say(f"{name}: sampled {n} images in {time.time() - t0:.1f} s")
        return rec

    def _evaluate_stage(self, name: str, test: ImageSet, sample_rec: StageRecord,
                        settings: EvalSettings, store: StageStore, mdir: Path) -> dict:
        key = content_key(stage="evaluate", samples=sample_rec.output_hash, real=test.sha256(),
                          eval=settings.identity())
        rec = None if self.cfg.force else store.done("evaluate", key)
        if _from_main(rec is not None):
            self.say.say(f"{name}: evaluate done (cached)")
            return json.loads((mdir / "metrics.json").read_text())
        if self.say.main:
            store.invalidate("evaluate")
        t0 = time.time()
        from genbench.metrics.pipeline import evaluate

        synth = ImageSet(load_npz_images(mdir / "samples.npz"),
                         sources=[f"{name}/samples.npz#{i}" for i in range(sample_rec.info["n"])],
                         mapping=test.mapping, meta={"path": str(mdir / "samples.npz")})
        with self.say.bar(f"{name}: evaluate", None) as bar:
            report = evaluate(test, synth, settings.options(self._cache_dir()),
                              progress=bar.subtasks)
        obj = report.to_json()
        if not self.say.main:  # under torchrun every rank has the report; rank 0 writes it
            _barrier()
            return obj
        outputs = []
        fds = report.metrics.get("fds")
        emb = None if fds is None else getattr(fds, "extra", {}).get("embedding")
        if emb is not None:
            outputs.append(save_array_npz(mdir / "fds_embedding.npz",
                                          embedding=np.asarray(emb, dtype=np.float32),
                                          n_real=np.array(len(test))))
        else:
            (mdir / "fds_embedding.npz").unlink(missing_ok=True)
        outputs.append(atomic_write_json(mdir / "metrics.json", obj))
        if self._record_unless_failed(name, obj):
            store.complete("evaluate", key, outputs, started=t0)
        _barrier()
        self.say.say(f"{name}: evaluated in {time.time() - t0:.1f} s")
        return obj

    def _run_model(self, name: str, data: Any, data_key: str, settings: EvalSettings,
                   n_samples: int) -> ModelOutcome:
        mdir = self.root / name
        mdir.mkdir(parents=True, exist_ok=True)
        store = StageStore(mdir)
        gen = self._create(name)
        config = _config_dict(gen)
        cfg_path = mdir / "config.json"
        cfg_obj = {"model": name, "preset": self.cfg.preset, "resolution": self.size,
                   "overrides": self.cfg.overrides, "steps": self.cfg.steps or config.get("steps"),
                   "seed": self.cfg.seed, "config": config}
        if not cfg_path.is_file() or json.loads(cfg_path.read_text()) != cfg_obj:
            atomic_write_json(cfg_path, cfg_obj)
        train_rec, trained_now = self._train_stage(name, gen, data.train, data_key, store, mdir)
        sample_rec = self._sample_stage(name, gen, trained_now, n_samples, train_rec, store, mdir)
        metrics = self._evaluate_stage(name, data.test, sample_rec, settings, store, mdir)
        entry = {
            "metrics": metrics,
            "config": cfg_obj,
            "num_parameters": train_rec.info.get("num_parameters"),
            "train": {"steps": train_rec.info.get("steps"), "completed_at": train_rec.completed_at,
                      "weights_sha256": train_rec.outputs.get(FINAL_WEIGHTS)},
            "samples": {"n": n_samples, "npz_sha256": sample_rec.outputs.get("samples.npz")},
            "stages": {s: r.key for s in ("train", "sample", "evaluate")
                       if (r := store.read(s)) is not None},
        }
        return ModelOutcome(name, entry)

    # -- the whole run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        from genbench.distributed import init_from_env

        init_from_env(cfg.device or "auto")  # under torchrun: join the job before any stage decides
        # Fail fast on options a model rejects, before hours of training the others.
        configs = {}
        for name in self.models:
            configs[name] = _config_dict(self._create(name))
        self.root.mkdir(parents=True, exist_ok=True)
        data = self._prepare_data()
        data_key = str(data.fingerprint)
        data_info = {
            "name": cfg.dataset,
            "description": getattr(data, "description", ""),
            "source": getattr(data, "source", None),
            "fingerprint": data_key,
            "size": self.size,
            "n_train": len(data.train),
            "n_test": len(data.test),
            "test_sha256": data.test.sha256(),
            "data_dir": None if cfg.data_dir is None else str(cfg.data_dir),
        }
        atomic_write_json(self.root / "data.json", data_info)
        preview = data.test.images[:PREVIEW_N, 0].numpy()
        save_array_npz(self.root / "real_preview.npz", images=preview.astype(np.float32))

        weights, weights_sha = self._resolve_weights()
        settings = EvalSettings(tuple(cfg.metrics), weights, weights_sha, self._eval_device(),
                                cfg.seed, cfg.fds_seeds, dict(cfg.eval_options))
        n_samples = cfg.n_samples or len(data.test)

        floor = self._floor_stage(data.test, data_key, settings)
        outcomes: list[ModelOutcome] = []
        for name in self.models:
            try:
                outcomes.append(self._run_model(name, data, data_key, settings, n_samples))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one model's failure must not lose the others' results
                msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, GenbenchError) else str(exc)
                self.say.console.print(f"[bold red]{name} failed:[/] {msg}", highlight=False,
                                       soft_wrap=True)
                if __import__("os").environ.get("GENBENCH_DEBUG"):
                    raise
                outcomes.append(ModelOutcome(name, {"metrics": None, "config": configs[name],
                                                    "error": msg}, error=msg))

        results = {
            "schema": RESULTS_SCHEMA,
            "genbench_version": genbench.__version__,
            "dataset": cfg.dataset,
            "preset": cfg.preset,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "data": data_info,
            "settings": {
                "seed": cfg.seed,
                "n_samples": n_samples,
                "steps_override": cfg.steps,
                "overrides": cfg.overrides,
                "metrics": list(cfg.metrics),
                "device": settings.device,
                "inception_weights": None if weights is None else
                {"path": str(weights), "sha256": weights_sha},
            },
            "versions": versions(),
            "models": {o.name: o.entry for o in outcomes},
            "floor": floor,
        }
        self.write_outputs(results)
        return results

    def write_outputs(self, results: dict[str, Any]) -> None:
        """results.json, the three table files and the figures (cheap: always rewritten)."""
        from genbench.report.tables import build_table

        if not self.say.main:
            return

        atomic_write_json(self.root / "results.json", results)
        ok = [results]
        atomic_write_text(self.root / "table.csv", build_table(ok, "csv"))
        atomic_write_text(self.root / "table.md", build_table(ok, "md"))
        atomic_write_text(self.root / "table.tex", build_table(ok, "latex", standalone=True))
        if self.cfg.figures:
            from genbench.report.figures import make_figures

            with self.say.bar("figures", None):
                made = make_figures(self.root, results)
            self.say.say(f"figures: {len(made)} written to {self.root / 'figures'}")


def _barrier() -> None:
    """Under torchrun: wait until rank 0 has written what the next stage may read."""
    from genbench.distributed import current

    current().barrier()


def _from_main(decision: bool) -> bool:
    """Rank 0's ``decision`` on every rank (a stage is cached or not for all of them at once)."""
    from genbench.distributed import current

    return bool(current().broadcast_object(decision))


def run_benchmark(cfg: RunConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run (or resume) the benchmark described by ``cfg``; returns the results.json object."""
    return Runner(cfg, reporter).run()

