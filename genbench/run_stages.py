"""The stages of ``genbench run``: what each reads and writes, and when it counts as done.

Per model, under ``<out>/<dataset>/<preset>/<model>/``::

    training/<id>/            one folder per training identity (genbench.identity.train_key):
        identity.json         what was trained: model, architecture and training values, data, seed
        checkpoints/          the engine's resumable checkpoints
        losses.jsonl          the engine's loss log
        final.safetensors     the trained weights
    losses.jsonl              a copy of the current training's loss log (for the figures)
    samples/, samples.npz     the samples (PNG, 16-bit for CT/MRI; float32 canonical)
    metrics.json              ``genbench metrics --json`` schema (paths relative to the run folder)
    mem_pairs.npz             the closest synthetic-training pairs of the memorisation audit
    fds_embedding.npz         the joint t-SNE coordinates behind FDS (real rows first)

A training is never deleted to make room for another: a changed architecture or training
value trains into a new ``training/<id>/`` folder and the earlier one stays where it is (the
message says where), so going back to earlier settings finds its weights again. ``--force``
retrains, moving the earlier folder aside (``training/<id>.replaced-<time>/``) unless
``--discard-checkpoints`` is given.

Every stage is recorded with the key of its inputs (see :mod:`genbench.stages`); the keys
come from :mod:`genbench.identity`, the one place that knows which config values each stage
depends on.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench import identity
from genbench.errors import GenbenchError, InputError, WeightsUnavailableError
from genbench.imageset import ImageSet
from genbench.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from genbench.io.hashing import file_sha256
from genbench.progress import Step, prefixed
from genbench.stages import StageRecord, StageStore

SAMPLE_CHUNK = 256  # samples are drawn and saved in chunks, so sampling resumes too
TRAINING_DIR = "training"
FINAL_WEIGHTS = "final.safetensors"


def clear_dir(path: Path) -> None:
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


# --------------------------------------------------------------------------- evaluation settings


@dataclass
class EvalSettings:
    metrics: tuple[str, ...]
    weights: Path | None  # None: Inception metrics are unavailable (notice printed)
    weights_sha256: str | None
    device: str
    seed: int
    fds_seeds: int | None
    cache_dir: Path | None = None
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

    def options(self) -> Any:
        from genbench.metrics.pipeline import EvalOptions

        kwargs: dict[str, Any] = {
            "metrics": self.metrics,
            "inception_weights": self.weights,
            "device": self.device,
            "seed": self.seed,
            "cache_dir": self.cache_dir,
        }
        if self.fds_seeds is not None:
            kwargs["fds_seeds"] = self.fds_seeds
        return EvalOptions(**{**self.extra, **kwargs})


def resolve_weights(metrics: tuple[str, ...], given: Path | None, notice: Any) -> tuple[Path | None, str | None]:
    """The Inception weights file and its SHA-256, or ``(None, None)`` after one notice."""
    from genbench.metrics.registry import REGISTRY

    if not set(REGISTRY.of_family("inception")) & set(metrics):
        return None, None
    from genbench.metrics.inception import resolve_inception_weights

    if given is not None and not Path(given).expanduser().is_file():
        # An explicit path that is wrong is a typo to fix, not a reason to skip metrics.
        raise InputError("--inception-weights: no such file", str(given))
    try:
        path = Path(resolve_inception_weights(given))
    except WeightsUnavailableError as exc:
        notice(
            f"Inception-v3 weights not available, so IS, FID, KID, precision and recall "
            f"will read n/a (FDS and DS are still computed). {exc}"
        )
        return None, None
    return path, file_sha256(path)


# --------------------------------------------------------------------------- the stages


def _barrier() -> None:
    """Under torchrun: wait until rank 0 has written what the next stage may read."""
    from genbench.distributed import current

    current().barrier()


def _from_main(decision: bool) -> bool:
    """Rank 0's ``decision`` on every rank (a stage is cached or not for all of them at once)."""
    from genbench.distributed import current

    return bool(current().broadcast_object(decision))


@dataclass
class StageContext:
    """What every stage of one run shares."""

    root: Path  # <out>/<dataset>/<preset>
    dataset: str
    seed: int
    force: bool
    discard_checkpoints: bool
    say: Any  # genbench.runner.Reporter: messages, notices and the progress factory
    settings: EvalSettings | None = None
    # The held-out set (and training split) prepared once for every model's evaluation: their
    # per-image quantities (features, within-set nearest SSIM, mem's nearest-training search
    # of the held-out images) are computed for the first model and reused by the others.
    prepared: Any = None

    def rel(self, path: Path) -> str:
        """``path`` relative to the run folder (messages name files the user can find)."""
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)


def _failed_metrics(ctx: StageContext, who: str, metrics_json: dict) -> bool:
    """A metric that crashed is not a result to keep: say so and leave the stage open."""
    failed = {m: e.get("reason") for m, e in (metrics_json.get("metrics") or {}).items()
              if e.get("status") == "failed"}
    for m, reason in failed.items():
        ctx.say.console.print(f"[bold red]{who}: {m} failed:[/] {reason} (rerun to retry)",
                              highlight=False, soft_wrap=True)
    return bool(failed)


def _describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``lr 0.0006 -> 0.0005, steps 6 -> 8`` between two identity.json objects."""
    a, b = {**old.get("identity", {}), **{k: v for k, v in old.items() if k != "identity"}}, \
        {**new.get("identity", {}), **{k: v for k, v in new.items() if k != "identity"}}
    changed = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
               if a.get(k) != b.get(k)]
    return ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")


def _set_current(ctx: StageContext, mdir: Path, rec: StageRecord, tdir: Path) -> None:
    """Make ``tdir`` the model's current training: copy its loss log next to the samples and
    record which training the later stages use (``<model>/.stages/train.json``)."""
    log = tdir / "losses.jsonl"
    outputs = [tdir / FINAL_WEIGHTS]
    if log.is_file():
        outputs.append(atomic_write_text(mdir / "losses.jsonl", log.read_text(encoding="utf-8")))
    else:
        (mdir / "losses.jsonl").unlink(missing_ok=True)
    StageStore(mdir).complete("train", rec.key, outputs, started=time.time(),
                              info={**rec.info, "folder": ctx.rel(tdir)})


def _set_aside(ctx: StageContext, name: str, tdir: Path) -> None:
    """``--force``: the training about to be redone keeps its files under a new name."""
    if not tdir.exists():
        return
    if ctx.discard_checkpoints:
        clear_dir(tdir)
        ctx.say.say(f"{name}: discarded the earlier checkpoints of these settings "
                    f"(--discard-checkpoints)")
        return
    aside = tdir.with_name(f"{tdir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        n += 1
        aside = tdir.with_name(f"{tdir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    tdir.rename(aside)
    ctx.say.say(f"{name}: --force retrains; the earlier checkpoints are kept in {ctx.rel(aside)}/ "
                "(--discard-checkpoints deletes them instead)")


def train_stage(ctx: StageContext, name: str, gen: Any, train: ImageSet, data_key: str,
                mdir: Path) -> tuple[StageRecord, bool]:
    """Train (or resume, or reuse) ``gen``; returns the record and whether it trained now."""
    key = identity.train_key(name, gen.config, data=data_key, seed=ctx.seed, owner=type(gen))
    tdir = mdir / TRAINING_DIR / key[:12]
    store = StageStore(tdir)
    current = StageStore(mdir).read("train")
    rec = None if ctx.force else store.done("train", key)
    if rec is not None:
        if current is None or current.key != key or not StageStore(mdir).done("train", key):
            _set_current(ctx, mdir, rec, tdir)
            ctx.say.say(f"{name}: train done earlier with these settings "
                        f"(cached in {ctx.rel(tdir)}/, {rec.info.get('steps')} steps)")
        else:
            ctx.say.say(f"{name}: train done (cached, {rec.info.get('steps')} steps)")
        return rec, False

    ident = {"identity": identity.checkpoint_identity(name, gen.config, type(gen)),
             "data": data_key, "seed": ctx.seed}
    if ctx.force:
        if ctx.say.main:  # under torchrun one rank moves the folder, the others wait for it
            _set_aside(ctx, name, tdir)
        _barrier()
    elif current is not None and current.key != key:
        old_dir = mdir / TRAINING_DIR / current.key[:12]
        try:
            old = json.loads((old_dir / "identity.json").read_text(encoding="utf-8"))
            what = _describe_change(old, ident)
        except (OSError, json.JSONDecodeError):
            what = "settings"
        ctx.say.say(f"{name}: training settings changed ({what}): training anew in "
                    f"{ctx.rel(tdir)}/; the earlier checkpoints stay in {ctx.rel(old_dir)}/")
    store.invalidate("train")
    atomic_write_json(tdir / "identity.json", ident)

    t0 = time.time()
    result = gen.fit(train, workdir=tdir, seed=ctx.seed,
                     progress=prefixed(ctx.say.progress, f"{name}: "))
    final = tdir / FINAL_WEIGHTS
    gen.save(final)
    info = {
        "steps": int(result.steps),
        "resumed_from": result.resumed_from,
        "num_parameters": int(gen.num_parameters()),
        "train_seconds_this_run": round(time.time() - t0, 2),
    }
    rec = store.complete("train", key, [final], started=t0, info=info)
    _set_current(ctx, mdir, rec, tdir)
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    last = result.history[-1] if result.history else {}
    losses = " ".join(f"{k}={v:.4g}" for k, v in list(last.items())[:4] if k != "step")
    ctx.say.say(f"{name}: trained {result.steps} steps in {time.time() - t0:.1f} s{resumed}"
                + (f" (last losses: {losses})" if losses else ""))
    return rec, True


def sample_stage(ctx: StageContext, name: str, gen: Any, loaded: bool, n: int,
                 train_rec: StageRecord, mdir: Path, bit_depth: int) -> StageRecord:
    """Draw ``n`` samples from the trained weights (chunk by chunk, so a kill loses one chunk)."""
    key = identity.sample_key(gen.config, weights=train_rec.outputs[FINAL_WEIGHTS], n=n, seed=ctx.seed,
                              owner=type(gen), chunk=SAMPLE_CHUNK, bit_depth=bit_depth)
    store = StageStore(mdir)
    if not ctx.say.main:
        # Under torchrun rank 0 samples (or finds them cached) and writes; the others use its
        # record: their own weights file hash need not be rank 0's (DDP runs have ended with
        # ranks differing in the last bits), and every rank must score the same images.
        _barrier()
        rec = store.read("sample")
        if rec is None:
            raise GenbenchError(f"{name}: rank 0 did not finish sampling (see its error)")
        return rec
    try:
        rec = None if ctx.force else store.done("sample", key)
        if rec is not None:
            ctx.say.say(f"{name}: sample done (cached, {n} images)")
            return rec
        return _sample_on_main(ctx, name, gen, loaded, n, train_rec, mdir, bit_depth, key, store)
    finally:
        _barrier()


def _sample_on_main(ctx: StageContext, name: str, gen: Any, loaded: bool, n: int,
                    train_rec: StageRecord, mdir: Path, bit_depth: int, key: str,
                    store: StageStore) -> StageRecord:
    store.invalidate("sample")
    if not loaded:
        gen.load(mdir / TRAINING_DIR / train_rec.key[:12] / FINAL_WEIGHTS)
    parts_root = mdir / ".sample_parts"
    parts = parts_root / key[:16]
    for stale in parts_root.glob("*"):
        if stale != parts:
            clear_dir(stale)  # unfinished chunks of other settings: intermediate, not results
    if ctx.force:
        clear_dir(parts)
    parts.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    chunks = []
    n_chunks = (n + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK
    with Step(ctx.say.progress, f"{name}: sample", n) as bar:
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
                x = gen.sample(k, seed=ctx.seed * 1_000_003 + i)
                buf = io.BytesIO()
                np.save(buf, x.numpy().astype(np.float32))
                atomic_write_bytes(path, buf.getvalue())
            chunks.append(x)
            bar.absolute(min(n, (i + 1) * SAMPLE_CHUNK), n)
    images = torch.cat(chunks).float().clamp(-1, 1)
    from genbench.io import write_npz, write_png_folder

    npz = write_npz(images, mdir / "samples.npz", overwrite=True, model=name,
                    seed=ctx.seed, dataset=ctx.dataset)
    clear_dir(mdir / "samples")
    pngs = write_png_folder(images, mdir / "samples", bit_depth=bit_depth, prefix="sample",
                            overwrite=True)
    rec = store.complete("sample", key, [npz, *pngs], started=t0,
                         info={"n": n, "bit_depth": bit_depth})
    clear_dir(parts_root)
    ctx.say.say(f"{name}: sampled {n} images in {time.time() - t0:.1f} s")
    return rec


def evaluate_stage(ctx: StageContext, name: str, test: ImageSet, sample_rec: StageRecord,
                   mdir: Path, train: ImageSet | None = None) -> dict:
    """Score the samples against the held-out real set; returns the metrics JSON.

    ``train`` is the exact training split the model was fitted on: the memorisation audit
    (``mem``) searches it for each sample's nearest training image."""
    settings = ctx.settings
    assert settings is not None
    key = identity.evaluate_key(samples=sample_rec.output_hash, real=test.sha256(),
                                train=None if train is None else train.sha256(),
                                evaluation=settings.identity())
    store = StageStore(mdir)
    rec = None if ctx.force else store.done("evaluate", key)
    if _from_main(rec is not None):
        ctx.say.say(f"{name}: evaluate done (cached)")
        return json.loads((mdir / "metrics.json").read_text())
    if ctx.say.main:
        store.invalidate("evaluate")
    t0 = time.time()
    from genbench.metrics.mem import save_top_pairs
    from genbench.report.figures import MEM_PAIRS_FILE

    synth = ImageSet(load_npz_images(mdir / "samples.npz"),
                     sources=[f"{name}/samples.npz#{i}" for i in range(sample_rec.info["n"])],
                     mapping=test.mapping, meta={"path": ctx.rel(mdir / "samples.npz")})
    report = _prepared(ctx, test, train).evaluate(
        synth, progress=prefixed(ctx.say.progress, f"{name}: evaluate: "))
    obj = portable(report.to_json(), ctx.root)
    if not ctx.say.main:  # under torchrun every rank has the report; rank 0 writes it
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
    mem = report.metrics.get("mem")
    pairs = None if mem is None else save_top_pairs(mem, mdir / MEM_PAIRS_FILE)
    if pairs is not None:  # the closest synthetic-training pairs (the report's mem_pairs figure)
        outputs.append(pairs)
    else:
        (mdir / MEM_PAIRS_FILE).unlink(missing_ok=True)
    outputs.append(atomic_write_json(mdir / "metrics.json", obj))
    if not _failed_metrics(ctx, name, obj):
        store.complete("evaluate", key, outputs, started=t0)
    _barrier()
    ctx.say.say(f"{name}: evaluated in {time.time() - t0:.1f} s")
    return obj


def _prepared(ctx: StageContext, test: ImageSet, train: ImageSet | None) -> Any:
    from genbench.metrics.pipeline import PreparedReal

    p = ctx.prepared
    if p is None or p.real is not test or p.train is not train:
        assert ctx.settings is not None
        p = ctx.prepared = PreparedReal(test, ctx.settings.options(), train=train)
    return p


def floor_stage(ctx: StageContext, test: ImageSet, data_key: str, train: ImageSet | None = None) -> dict:
    """The real-vs-real floor at the same settings: the held-out set (N) against N images drawn
    (seeded) from the training split, which are real images disjoint from it, so the floor is
    scored at the models' N. With fewer than N training images: two halves of the held-out set,
    labelled n = N/2 (FID, KID, FDS and DS read worse at half size). The choice is recorded in
    the JSON's ``floor_info`` (see :func:`genbench.metrics.pipeline.floor_plan`)."""
    settings = ctx.settings
    assert settings is not None
    folder = ctx.root / "floor"
    store = StageStore(folder)
    key = identity.floor_key(data=data_key, real=test.sha256(), evaluation=settings.identity(),
                             train=None if train is None else train.sha256())
    if _from_main(not ctx.force and store.done("floor", key) is not None):
        ctx.say.say("floor: done (cached)")
        return json.loads((folder / "metrics.json").read_text())
    t0 = time.time()
    from genbench.metrics.pipeline import floor
    from genbench.metrics.registry import REGISTRY

    opts = settings.options()
    other = train if train is not None and len(train) >= len(test) else None
    if other is None:
        ctx.say.notice(f"floor: the training split has {0 if train is None else len(train)} images, "
                       f"fewer than the {len(test)} held-out ones, so the real-vs-real floor compares "
                       f"two halves of the held-out set (n = N/2 = {len(test) // 2}), not the models' N")
    report = floor(test, opts, other=other, train=None if other is not None else train,
                   progress=prefixed(ctx.say.progress, "floor: "))
    obj = report.to_json()
    with_train = tuple(m for m in opts.metrics if REGISTRY[m].family == "train")
    if other is not None and with_train and train is not None:
        # A sample of the training split shares patients with the rest of it (slices of one
        # scan), so against "the training set minus the sample" it reads as memorised (0.94-0.98
        # on pelvic and heart phantoms at 32 px, 0.74 at 16 px). The floor of a training-set
        # metric is new patients instead: two halves of the held-out set, neither in the
        # training split, against all of it.
        held = floor(test, dataclasses.replace(opts, metrics=with_train), train=train,
                     progress=prefixed(ctx.say.progress, "floor: "))
        for m, entry in held.to_json()["metrics"].items():
            if m in with_train:
                obj["metrics"][m] = entry
        obj["floor_info"]["training_set_metrics"] = {
            "metrics": list(with_train), **(held.floor_info or {}),
            "why": "a sample of the training split shares patients with the rest of it; the "
                   "floor of a metric against the training set uses held-out images (new patients)"}
    obj = portable(obj, ctx.root)
    if ctx.say.main:  # under torchrun every rank has the report; rank 0 writes it
        out = atomic_write_json(folder / "metrics.json", obj)
        if not _failed_metrics(ctx, "floor", obj):
            store.complete("floor", key, [out], started=t0)
    _barrier()
    ctx.say.say(f"floor: {report.floor_info['note']}; evaluated in {time.time() - t0:.1f} s")
    return obj


# --------------------------------------------------------------------------- portable records


def portable(obj: Any, root: Path) -> Any:
    """``obj`` (JSON) with no absolute path in it, so a run folder can be moved or committed:
    a path inside the run folder becomes relative to it; a file outside it is named, not
    located (its SHA-256, recorded beside it, identifies it); the feature cache location, a
    runtime setting, is left out (a run always uses the default cache root)."""
    base = Path(os.path.abspath(root))

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (None if k == "cache_dir" else walk(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
            p = Path(os.path.abspath(value))
            try:
                return p.relative_to(base).as_posix()
            except ValueError:
                return p.name
        return value

    return walk(obj)
