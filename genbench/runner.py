"""The ``genbench run`` pipeline: prepare data -> per model train, sample, evaluate -> tables.

Layout under ``<out>/<dataset>/<preset>/``::

    data.json                 what was prepared (description, source, fingerprint, sizes)
    real_preview.npz          a few held-out real images (for figures and the HTML report)
    floor/metrics.json        the real-vs-real floor: the held-out set against as many training
                              images (size-matched; halves of it, n = N/2, if the training split is
                              smaller), its ``floor_info`` says which
    <model>/                  the model's stages (see ``genbench.run_stages``)
    results.json, table.csv, table.md, table.tex, figures/

Paths recorded in results.json and the stage records are relative to the run folder (files
outside it are named, with their SHA-256), so a run folder can be moved, copied or committed.

This module runs the stages in order and collects what they return; what each stage does,
and what it depends on, lives in :mod:`genbench.run_stages` and :mod:`genbench.identity`.
Every stage is recorded with a content hash of its inputs (see ``genbench.stages``), so a
rerun skips finished stages, a changed input reruns only what depends on it, and a kill at any
moment loses at most the current stage's unsaved work (training resumes from the engine's
newest checkpoint; sampling from its newest finished chunk).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import genbench
from genbench import identity
from genbench.cache import cache_dir
from genbench.devices import resolve_device
from genbench.errors import GenbenchError, UsageError
from genbench.io.atomic import atomic_write_json
from genbench.metrics.registry import REGISTRY
from genbench.progress import ProgressFactory, Step, plain_lines, rich_bars
from genbench.run_stages import (
    FINAL_WEIGHTS,
    EvalSettings,
    StageContext,
    evaluate_stage,
    floor_stage,
    load_npz_images,  # noqa: F401 (part of this module's interface: genbench.turing reads samples)
    portable,
    resolve_weights,
    sample_stage,
    save_array_npz,
    train_stage,
)
from genbench.stages import StageStore

RESULTS_SCHEMA = "genbench.results/1"

# Defaults that depend on the preset: the image size (the image count is the data preset's).
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {"size": 32},
    "paper": {"size": 256},
}
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
    discard_checkpoints: bool = False  # with force: delete the retrained settings' checkpoints
    inception_weights: Path | None = None
    steps: int | None = None
    metrics: tuple[str, ...] = field(default_factory=REGISTRY.default_names)
    overrides: dict[str, Any] = field(default_factory=dict)
    figures: bool = True
    fds_seeds: int | None = None  # t-SNE repeats for FDS (None: the metrics default, 3)
    eval_options: dict[str, Any] = field(default_factory=dict)  # further EvalOptions fields (--kid-subset-size...)
    # Downstream utility (genbench.utility): per-class generators, then classifiers trained on
    # real / synthetic / mixed data. ``data_options``: the data set's labels (labels,
    # label_finding, finding_strength, prevalence); with --utility a phantom uses its finding.
    utility: bool = False
    utility_seeds: int = 3
    classifier: dict[str, Any] = field(default_factory=dict)  # ClassifierConfig overrides
    data_options: dict[str, Any] = field(default_factory=dict)

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


def _config_roles(gen: Any) -> dict[str, str]:
    cfg = getattr(gen, "config", None)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return identity.field_roles(cfg, type(gen))
    return {}


# --------------------------------------------------------------------------- progress


class Reporter:
    """Stage messages, one-time notices, and the run's progress factory (:mod:`genbench.progress`):
    rich bars on a terminal, a plain line every 10% otherwise, nothing with ``quiet``."""

    def __init__(self, console: Any = None, quiet: bool = False) -> None:
        from rich.console import Console

        from genbench.distributed import is_main_process

        self.console = console or Console(stderr=True)
        self.main = is_main_process()  # under torchrun only rank 0 speaks
        self.quiet = quiet or not self.main
        self._notices: set[str] = set()
        self.progress: ProgressFactory | None = None  # set for the duration of a run

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True)

    def notice(self, text: str) -> None:
        """A message printed at most once per run (e.g. missing weights)."""
        if text not in self._notices and self.main:
            self._notices.add(text)
            self.console.print(f"[bold yellow]notice:[/] {text}", highlight=False, soft_wrap=True)

    @contextmanager
    def bars(self) -> Iterator[ProgressFactory | None]:
        """Install the progress factory for the length of a run."""
        terminal = self.console.is_terminal and not self.quiet
        with rich_bars(self.console, enabled=terminal, hide_done=True) as bars:
            self.progress = bars or (None if self.quiet else plain_lines(self.say))
            try:
                yield self.progress
            finally:
                self.progress = None


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
        # Checked here, before any data is prepared; the engine and the metrics use the same check.
        self.device = resolve_device(cfg.device)
        if cfg.steps is not None and cfg.steps < 1:
            raise UsageError("--steps must be at least 1")
        if cfg.n_samples is not None and cfg.n_samples < 2:
            raise UsageError("--n-samples must be at least 2")
        if cfg.discard_checkpoints and not cfg.force:
            raise UsageError("--discard-checkpoints only applies with --force (checkpoints of "
                             "other settings are never deleted)")
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
            "cache_dir": cache_dir("datasets"),
            "options": self._data_options(),
        }
        with Step(self.say.progress, f"{self.cfg.dataset}: prepare data", None):
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
        if self.cfg.utility:
            from genbench.utility.pipeline import require_labels

            require_labels(data, self.cfg.dataset)
        return data

    def _data_options(self) -> dict[str, Any]:
        """The data set's label options; --utility on a phantom asks for its finding."""
        options = {k: v for k, v in self.cfg.data_options.items() if v is not None}
        if self.cfg.utility and self.cfg.data_dir is None and "labels" not in options:
            options["labels"] = "phantom"
        return options

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
        if self.cfg.steps is not None:
            # Into the config, not only the fit: schedules derived from the length (PGGAN's
            # growth phases) follow it, and the training identity records it.
            overrides["steps"] = self.cfg.steps
        if self.cfg.device:
            overrides["device"] = self.device
        return create_generator(name, self.cfg.preset, self.size, **overrides)

    # -- one model ---------------------------------------------------------------------------

    def _run_model(self, ctx: StageContext, name: str, data: Any, data_key: str,
                   n_samples: int) -> ModelOutcome:
        mdir = self.root / name
        mdir.mkdir(parents=True, exist_ok=True)
        gen = self._create(name)
        config = _config_dict(gen)
        cfg_path = mdir / "config.json"
        cfg_obj = {"model": name, "preset": self.cfg.preset, "resolution": self.size,
                   "overrides": self.cfg.overrides, "steps": config.get("steps"),
                   "seed": self.cfg.seed, "config": config,
                   "roles": _config_roles(gen)}
        if not cfg_path.is_file() or json.loads(cfg_path.read_text()) != cfg_obj:
            atomic_write_json(cfg_path, cfg_obj)
        if self.cfg.utility:  # one generator per class (or one class-conditional one)
            from genbench.utility.pipeline import per_class_stages

            train_rec, sample_rec = per_class_stages(ctx, name, lambda: self._create(name), data,
                                                     data_key, n_samples, self._bit_depth())
        else:
            train_rec, trained_now = train_stage(ctx, name, gen, data.train, data_key, mdir)
            sample_rec = sample_stage(ctx, name, gen, trained_now, n_samples, train_rec, mdir,
                                      self._bit_depth())
        metrics = evaluate_stage(ctx, name, data.test, sample_rec, mdir, train=data.train)
        store = StageStore(mdir)
        entry = {
            "metrics": metrics,
            "config": cfg_obj,
            "num_parameters": train_rec.info.get("num_parameters"),
            "train": {"steps": train_rec.info.get("steps"), "completed_at": train_rec.completed_at,
                      "weights_sha256": train_rec.outputs.get(FINAL_WEIGHTS),
                      "folder": (store.read("train") or train_rec).info.get("folder")},
            "samples": {"n": n_samples, "npz_sha256": sample_rec.outputs.get("samples.npz")},
            "stages": {s: r.key for s in ("train", "sample", "evaluate")
                       if (r := store.read(s)) is not None},
        }
        if self.cfg.utility:  # the class trainings stand in for the model's one training
            folders = train_rec.info.get("folders") or []
            entry["train"] |= {"folder": folders[0] if len(folders) == 1 else None,
                               "folders": folders,
                               "per_class": train_rec.info.get("per_class"),
                               "weights_sha256": train_rec.outputs.get(FINAL_WEIGHTS),
                               "weights_sha256_per_class": dict(train_rec.outputs)}
            entry["stages"]["train"] = train_rec.key
        return ModelOutcome(name, entry)

    # -- the whole run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        from genbench.distributed import init_from_env

        init_from_env(self.device)  # under torchrun: join the job before any stage decides
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
        if getattr(data, "classes", None) is not None:
            from genbench.utility.rundir import prepare_record

            data_info |= {"classes": data.classes, "class_counts": data.class_counts(),
                          "prepare": prepare_record(cfg.dataset, cfg.data_dir, self.size,
                                                    self.n_images, cfg.seed, data.params["options"])}
        atomic_write_json(self.root / "data.json", data_info)
        preview = data.test.images[:PREVIEW_N, 0].numpy()
        save_array_npz(self.root / "real_preview.npz", images=preview.astype(np.float32))

        weights, weights_sha = resolve_weights(tuple(cfg.metrics), cfg.inception_weights,
                                               self.say.notice)
        settings = EvalSettings(tuple(cfg.metrics), weights, weights_sha, self.device,
                                cfg.seed, cfg.fds_seeds, cache_dir("features"),
                                dict(cfg.eval_options))
        ctx = StageContext(root=self.root, dataset=cfg.dataset, seed=cfg.seed, force=cfg.force,
                           discard_checkpoints=cfg.discard_checkpoints, say=self.say,
                           settings=settings)
        n_samples = cfg.n_samples or len(data.test)

        floor = floor_stage(ctx, data.test, data_key, train=data.train)
        outcomes: list[ModelOutcome] = []
        for name in self.models:
            try:
                outcomes.append(self._run_model(ctx, name, data, data_key, n_samples))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one model's failure must not lose the others' results
                msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, GenbenchError) else str(exc)
                self.say.console.print(f"[bold red]{name} failed:[/] {msg}", highlight=False,
                                       soft_wrap=True)
                if os.environ.get("GENBENCH_DEBUG"):
                    raise
                outcomes.append(ModelOutcome(name, {"metrics": None, "config": configs[name],
                                                    "error": msg}, error=msg))

        if cfg.utility and self.say.main:  # under torchrun rank 0 trains the classifiers
            self._utility(ctx, data, [o.name for o in outcomes if not o.error], outcomes)

        data_rel = dict(data_info)
        if cfg.data_dir is not None:  # relative to the run folder, as every path in results.json
            data_rel["data_dir"] = os.path.relpath(os.path.abspath(cfg.data_dir), os.path.abspath(self.root))
        results = {
            "schema": RESULTS_SCHEMA,
            "genbench_version": genbench.__version__,
            "dataset": cfg.dataset,
            "preset": cfg.preset,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "data": data_rel,
            "settings": {
                "seed": cfg.seed,
                "n_samples": n_samples,
                "steps_override": cfg.steps,
                "overrides": cfg.overrides,
                "metrics": list(cfg.metrics),
                "device": settings.device,
                "inception_weights": None if weights is None else
                {"file": Path(weights).name, "sha256": weights_sha},
            },
            "versions": versions(),
            "models": {o.name: o.entry for o in outcomes},
            "floor": floor,
        }
        if cfg.utility and any(o.entry.get("utility") for o in outcomes):
            from genbench.utility.rundir import shared_entry

            results["utility"] = shared_entry({o.name: o.entry["utility"] for o in outcomes
                                               if o.entry.get("utility")})
        results = portable(results, self.root)
        self.write_outputs(results)
        return results

    def _utility(self, ctx: StageContext, data: Any, names: list[str],
                 outcomes: list[ModelOutcome]) -> None:
        """The utility stage; each model's result goes into its results entry."""
        from genbench.utility import UtilityConfig, classifier_config
        from genbench.utility.pipeline import utility_stage

        cfg = UtilityConfig(classifier_config(self.cfg.preset, **self.cfg.classifier),
                            seeds=self.cfg.utility_seeds, seed=self.cfg.seed)
        try:
            got = utility_stage(ctx, data, names, cfg)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # the models' results are kept; rerun to retry the utility
            msg = str(exc) if isinstance(exc, GenbenchError) else f"{type(exc).__name__}: {exc}"
            self.say.console.print(f"[bold red]utility failed:[/] {msg}", highlight=False,
                                   soft_wrap=True)
            if os.environ.get("GENBENCH_DEBUG"):
                raise
            return
        for o in outcomes:
            if o.name in got:
                o.entry["utility"] = got[o.name]

    def write_outputs(self, results: dict[str, Any]) -> None:
        """results.json, the three table files and the figures (cheap: always rewritten)."""
        from genbench.report.tables import write_run_tables

        if not self.say.main:
            return
        atomic_write_json(self.root / "results.json", results)
        write_run_tables(self.root, results)
        if self.cfg.figures:
            from genbench.report.figures import make_figures

            with Step(self.say.progress, "figures", None):
                made = make_figures(self.root, results)
            self.say.say(f"figures: {len(made)} written to {self.root / 'figures'}")


def run_benchmark(cfg: RunConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run (or resume) the benchmark described by ``cfg``; returns the results.json object."""
    runner = Runner(cfg, reporter)
    with runner.say.bars():
        return runner.run()

