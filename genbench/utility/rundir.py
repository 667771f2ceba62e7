"""The utility experiment on a ``genbench run`` folder (``genbench utility RUN_DIR``).

What it reads:

* ``RUN_DIR/data.json``: the ``prepare`` record (dataset, data folder, size, image count, seed,
  options including the label source) and the data fingerprint. The labelled data set is
  prepared again from it (real data from the data cache) and must have the same fingerprint,
  so the classifier sees exactly the images the generators were trained and judged on.
* ``RUN_DIR/<model>/class-<k>/samples.npz``: the model's synthetic images of class ``k``
  (written by ``genbench run --utility``: one unconditional generator per class, or a
  class-conditional model's samples per class).

What it writes: ``RUN_DIR/<model>/utility.json`` per model, the classifiers' cached test
predictions under ``RUN_DIR/utility/predictions/`` (a rerun retrains nothing), the
``utility`` entries of ``RUN_DIR/results.json`` (per model, and the shared real-only row) and
the run's tables (``table.{csv,md,tex}``, now with their Utility block).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.errors import InputError
from genbench.io.atomic import atomic_write_json
from genbench.utility.experiment import (
    Labelled,
    UtilityConfig,
    patient_groups,
    run_utility,
)

CLASS_DIR = "class-{k}"
PREDICTIONS = Path("utility") / "predictions"


@dataclass
class RunData:
    classes: list[str]
    train: Labelled
    test: Labelled
    groups: np.ndarray
    info: dict[str, Any]


def prepare_record(dataset: str, data_dir: Path | None, size: int, n: int | None, seed: int,
                   options: dict[str, Any]) -> dict[str, Any]:
    """What ``data.json`` must hold for the data to be prepared again (the runner writes it)."""
    # Absolute: `genbench utility` may run from another working directory.
    return {"dataset": dataset,
            "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
            "size": size, "n": n, "seed": seed,
            "options": {k: v for k, v in sorted(options.items()) if v is not None}}


def prepare_from_record(record: dict[str, Any], **extra: Any) -> Any:
    """The data set a ``prepare_record`` describes, prepared again (``extra``: e.g. cache_dir)."""
    from genbench.data import prepare_dataset

    return prepare_dataset(record["dataset"], data_dir=record.get("data_dir"), size=int(record["size"]),
                           n=record.get("n"), seed=int(record["seed"]),
                           options=dict(record.get("options") or {}), **extra)


def load_run_data(run_dir: Path) -> RunData:
    """The run's labelled real data, checked against the fingerprint the run recorded."""
    path = run_dir / "data.json"
    if not path.is_file():
        raise InputError("not a genbench run folder (no data.json)", str(run_dir))
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", str(path)) from None
    rec = info.get("prepare")
    if not info.get("classes") or not rec or not (rec.get("options") or {}).get("labels"):
        raise InputError(
            "the run's data carry no class labels, which the utility experiment needs; rerun "
            "with `genbench run ... --utility` (phantom: its labelled finding; real data: "
            "--labels folders or --label-finding NAME)",
            str(path),
        )
    data = prepare_from_record(rec)  # real data come from the data cache the run filled
    if data.fingerprint != info.get("fingerprint"):
        raise InputError(
            "the data prepared now differ from the run's (fingerprint changed: edited files or "
            "another genbench version); rerun `genbench run` first",
            str(path),
        )
    return RunData(
        list(data.classes),
        Labelled(data.train.images, data.train_labels),
        Labelled(data.test.images, data.test_labels),
        patient_groups(data.test.sources),
        info,
    )


def _read_npz_images(path: Path) -> torch.Tensor:
    try:
        with np.load(path, allow_pickle=False) as z:
            arr = z["images"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read synthetic images ({type(exc).__name__}: {exc})",
                         str(path)) from None
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return x[:, None] if x.ndim == 3 else x


def class_samples(model_dir: Path, classes: list[str]) -> Labelled | None:
    """A model's per-class synthetic images, or None when it has none (run without --utility)."""
    paths = [model_dir / CLASS_DIR.format(k=k) / "samples.npz" for k in range(len(classes))]
    if not any(p.is_file() for p in paths):
        return None
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError("per-class samples incomplete (rerun `genbench run ... --utility`)",
                         str(missing[0]))
    xs = [_read_npz_images(p) for p in paths]
    y = np.concatenate([np.full(len(x), k, dtype=np.int64) for k, x in enumerate(xs)])
    return Labelled(torch.cat(xs), y)


def find_models(run_dir: Path, classes: list[str], wanted: list[str] | None) -> dict[str, Labelled]:
    found: dict[str, Labelled] = {}
    names = wanted or sorted(p.name for p in run_dir.iterdir()
                             if p.is_dir() and (p / "config.json").is_file())
    for name in names:
        mdir = run_dir / name
        if not mdir.is_dir():
            raise InputError(f"no model folder {name!r} in the run", str(run_dir))
        pool = class_samples(mdir, classes)
        if pool is None:
            if wanted:
                raise InputError(
                    "no per-class samples (class-<k>/samples.npz); rerun `genbench run ... "
                    "--utility`", str(mdir))
            continue
        found[name] = pool
    return found


def utility_for_run(
    run_dir: Path,
    cfg: UtilityConfig,
    models: list[str] | None = None,
    say: Any = None,
) -> dict[str, dict[str, Any]]:
    """Run the experiment for the run's models; write utility.json files and update results.json."""
    run_dir = Path(run_dir)
    data = load_run_data(run_dir)
    pools = find_models(run_dir, data.classes, models)
    if not pools:
        raise InputError(
            "no model in the run has per-class samples (class-<k>/samples.npz); rerun "
            "`genbench run ... --utility`",
            str(run_dir),
        )
    results = run_utility(data.train, data.test, data.groups, data.classes, pools, cfg,
                          cache_dir=run_dir / PREDICTIONS, say=say)
    for name, res in results.items():
        atomic_write_json(run_dir / name / "utility.json", res)
    if update_results(run_dir / "results.json", results):
        write_tables(run_dir)
    return results


def write_tables(run_dir: Path) -> None:
    """The run's table files, rebuilt from its results.json (as ``genbench run`` writes them)."""
    from genbench.report.tables import write_run_tables

    write_run_tables(run_dir, json.loads((run_dir / "results.json").read_text()))


def shared_entry(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run-level utility record: the settings and the real-only row (same for all models)."""
    any_res = next(iter(results.values()))
    keep = ("classes", "positive", "classifier", "seeds", "ci_level", "ci_method", "n_boot",
            "p_value_method", "n_perm", "n_test_patients")
    out = {k: any_res[k] for k in keep}
    out["real"] = any_res["conditions"]["real"]
    out["n"] = {"real": any_res["n"]["real"], "test": any_res["n"]["test"]}
    return out


def update_results(path: Path, results: dict[str, dict[str, Any]]) -> bool:
    """Put each model's utility result and the shared entry into ``results.json`` (if any)."""
    if not path.is_file() or not results:
        return False
    try:
        obj = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", str(path)) from None
    for name, res in results.items():
        entry = obj.setdefault("models", {}).setdefault(name, {})
        entry["utility"] = res
    obj["utility"] = shared_entry(results)
    atomic_write_json(path, obj)
    return True
