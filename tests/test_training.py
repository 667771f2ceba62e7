"""The training engine: exact resume, atomic checkpoints, EMA, safe loading, data order, logs."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn

from genbench.errors import InputError, UsageError
from genbench.training import (
    CHECKPOINT_FORMAT,
    DataStream,
    EMATarget,
    Engine,
    EngineConfig,
    TrainingTask,
    fit_task,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    step_seed,
    update_ema,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def on_step(hook):
    """A genbench.progress factory that calls ``hook(steps_done, total)`` after every step."""

    def factory(description, total):
        assert description == "train"
        state = {"done": 0, "total": total}

        def advance(n, total=None):
            if total is not None:
                state["total"] = total
            state["done"] += n
            if n:
                hook(state["done"], state["total"])

        return advance

    return factory


class ToyTask(TrainingTask):
    """A small MLP fitted to noisy targets: uses the RNG, two batches per step, EMA and extra
    state, so that every piece of the engine's state matters for exact resume."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))
        self.ema = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))
        self.ema.load_state_dict(self.net.state_dict())
        self.counter = torch.zeros(())
        self.seen: list[torch.Tensor] = []

    def modules(self):
        return {"net": self.net}

    def build_optimizers(self, modules):
        return {"net": torch.optim.Adam(modules["net"].parameters(), lr=1e-2)}

    def ema_targets(self):
        return {"net": EMATarget(self.ema, decay=0.9)}

    def train_step(self, batch, step, engine):
        second = engine.next_batch()
        x = torch.cat([batch, second])
        self.seen.append(x.clone())
        noise = torch.randn_like(x) * 0.1
        loss = ((engine.module("net")(x + noise) - x.flip(1)) ** 2).mean()
        opt = engine.optimizer("net")
        opt.zero_grad()
        engine.backward(loss)
        opt.step()
        self.counter += 1
        return {"loss": loss.item()}

    def extra_state(self):
        return {"counter": self.counter.clone(), "note": "toy"}

    def load_extra_state(self, state):
        self.counter = state["counter"].clone()


DATA = torch.randn(37, 4, generator=torch.Generator().manual_seed(1))


def cfg(steps: int, **kw) -> EngineConfig:
    base = dict(steps=steps, batch_size=5, seed=3, device="cpu", log_every=1)
    base.update(kw)
    return EngineConfig(**base)


def weights(task: ToyTask) -> dict[str, torch.Tensor]:
    out = {f"net.{k}": v.clone() for k, v in task.net.state_dict().items()}
    out.update({f"ema.{k}": v.clone() for k, v in task.ema.state_dict().items()})
    return out


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    full = ToyTask()
    res_full = fit_task(full, DATA, cfg(12), workdir=tmp_path / "a")

    part = ToyTask()
    r1 = fit_task(part, DATA, cfg(5), workdir=tmp_path / "b")
    assert r1.steps == 5 and r1.resumed_from is None
    # A fresh process would start from freshly initialised (different) weights.
    resumed = ToyTask(seed=99)
    r2 = fit_task(resumed, DATA, cfg(12), workdir=tmp_path / "b")
    assert r2.resumed_from == 5 and r2.steps == 12

    wa, wb = weights(full), weights(resumed)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert float(resumed.counter) == 12.0  # extra state restored, then advanced
    # The same batches were seen after the resume as in the uninterrupted run.
    for a, b in zip(full.seen[5:], resumed.seen):
        assert torch.equal(a, b)
    # The loss history is continuous: steps 1..12 once each, same values.
    assert [h["step"] for h in r2.history] == list(range(1, 13))
    assert [h["loss"] for h in r2.history] == [h["loss"] for h in res_full.history]
    log = [json.loads(line) for line in (tmp_path / "b" / "losses.jsonl").read_text().splitlines()]
    assert [h["step"] for h in log] == list(range(1, 13))


def test_resume_from_periodic_checkpoint_after_crash(tmp_path):
    full = ToyTask()
    fit_task(full, DATA, cfg(9), workdir=tmp_path / "a")

    class Crash(Exception):
        pass

    def crash_at_7(step, total):
        if step == 7:
            raise Crash

    crashed = ToyTask()
    with pytest.raises(Crash):
        fit_task(crashed, DATA, cfg(9, checkpoint_every=3), workdir=tmp_path / "b",
                  progress=on_step(crash_at_7))
    assert [s for s, _ in list_checkpoints(tmp_path / "b")] == [3, 6]
    resumed = ToyTask(seed=5)
    r = fit_task(resumed, DATA, cfg(9, checkpoint_every=3), workdir=tmp_path / "b")
    assert r.resumed_from == 6
    for k, v in weights(full).items():
        assert torch.equal(v, weights(resumed)[k]), k
    # The torn log tail (step 7 written before the crash) is dropped on resume.
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "losses.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 10))


def test_half_written_temp_and_truncated_checkpoints_are_ignored(tmp_path):
    task = ToyTask()
    fit_task(task, DATA, cfg(4, checkpoint_every=2), workdir=tmp_path)
    ck = tmp_path / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    # An interrupted write leaves only a temp file; a newer final name can be truncated (copied
    # folder). Neither may be picked up.
    good = (ck / "ckpt-00000004.pt").read_bytes()
    (ck / ".ckpt-00000009.pt.abc123.tmp").write_bytes(good[: len(good) // 2])
    (ck / "ckpt-00000008.pt").write_bytes(good[: len(good) // 3])
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 4, 8]
    with pytest.warns(UserWarning, match="ckpt-00000008"):
        path, state = latest_checkpoint(tmp_path)
    assert path.name == "ckpt-00000004.pt" and state["step"] == 4
    with pytest.warns(UserWarning):
        r = fit_task(ToyTask(), DATA, cfg(6), workdir=tmp_path)
    assert r.resumed_from == 4


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    task = ToyTask()
    fit_task(task, DATA, cfg(2), workdir=tmp_path)
    target = tmp_path / "checkpoints" / "ckpt-00000002.pt"
    before = target.read_bytes()

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fit_task(ToyTask(), DATA, cfg(2, keep_checkpoints=5), workdir=tmp_path, resume=False)
    assert target.read_bytes() == before
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_loads_weights_only_and_rejects_pickles(tmp_path):
    fit_task(ToyTask(), DATA, cfg(2), workdir=tmp_path)
    path = tmp_path / "checkpoints" / "ckpt-00000002.pt"
    state = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert state["format"] == CHECKPOINT_FORMAT
    assert set(state) >= {"modules", "optimizers", "ema", "step", "data_position", "extra"}
    assert state["data_position"] == 2 * 2 * 5  # two batches of five per step

    evil = tmp_path / "evil" / "checkpoints" / "ckpt-00000009.pt"
    evil.parent.mkdir(parents=True)
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "obj": ToyTask}, buf)  # needs unpickling a class
    evil.write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_checkpoint(evil)
    with pytest.warns(UserWarning):
        assert latest_checkpoint(tmp_path / "evil") is None


def test_resume_with_other_configuration_is_refused(tmp_path):
    fit_task(ToyTask(), DATA, cfg(2), workdir=tmp_path, identity={"width": 16})
    with pytest.raises(InputError, match="width"):
        fit_task(ToyTask(), DATA, cfg(4), workdir=tmp_path, identity={"width": 32})
    with pytest.raises(InputError, match="seed"):
        fit_task(ToyTask(), DATA, cfg(4, seed=4), workdir=tmp_path, identity={"width": 16})


def test_checkpoint_at_target_runs_nothing_and_keeps_newest(tmp_path):
    fit_task(ToyTask(), DATA, cfg(6, checkpoint_every=1, keep_checkpoints=2), workdir=tmp_path)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5, 6]
    t = ToyTask(seed=7)
    r = fit_task(t, DATA, cfg(6), workdir=tmp_path)
    assert r.steps == 6 and r.resumed_from == 6 and t.seen == []
    assert float(t.counter) == 6.0


def test_ema_math():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    bn_a, bn_b = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    bn_b.num_batches_tracked += 7
    old = {k: v.clone() for k, v in a.state_dict().items()}
    update_ema(a, b, 0.75)
    for k, v in a.state_dict().items():
        assert torch.allclose(v, 0.75 * old[k] + 0.25 * b.state_dict()[k], atol=1e-7)
    update_ema(bn_a, bn_b, 0.5)
    assert int(bn_a.num_batches_tracked) == 7  # integer buffers are copied, not averaged
    # Before start_step the EMA copies the weights (decay 0); a callable decay is evaluated.
    t = EMATarget(nn.Linear(1, 1), decay=lambda step: 0.5, start_step=2)
    assert t.decay_at(1) == 0.0 and t.decay_at(2) == 0.5


def test_engine_ema_is_updated_every_step(tmp_path):
    task = ToyTask()
    snapshots = []

    def progress(step, total):
        snapshots.append((weights(task)["net.0.weight"], weights(task)["ema.0.weight"]))

    ema0 = weights(task)["ema.0.weight"]
    fit_task(task, DATA, cfg(3), progress=on_step(progress))
    ema = ema0
    for net_w, ema_w in snapshots:
        ema = 0.9 * ema + 0.1 * net_w
        assert torch.allclose(ema_w, ema, atol=1e-6)


def test_data_stream_is_seeded_permutations():
    s = DataStream(7, seed=1)
    first = s.take(0, 7)
    assert sorted(first.tolist()) == list(range(7))
    assert torch.equal(s.take(3, 9)[:4], first[3:])  # crosses into the next epoch
    assert sorted(s.take(7, 7).tolist()) == list(range(7))
    assert not torch.equal(s.take(7, 7), first)
    assert torch.equal(DataStream(7, seed=1).take(5, 10), s.take(5, 10))
    assert not torch.equal(DataStream(7, seed=2).take(0, 7), first)
    assert step_seed(0, 0, 1) != step_seed(0, 1, 1) != step_seed(0, 0, 2)


def test_engine_refuses_reduced_precision_on_cpu():
    for mp in ("bf16", "fp16"):
        with pytest.raises(UsageError, match="GPUs only"):
            Engine(ToyTask(), DATA, cfg(1, mixed_precision=mp))
    with pytest.raises(UsageError):
        EngineConfig(steps=1, batch_size=0).validate()


def test_progress_and_history_without_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []
    r = fit_task(ToyTask(), DATA, cfg(5, log_every=2), progress=on_step(lambda *a: calls.append(a)))
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5] and all(c[1] == 5 for c in calls)
    assert [h["step"] for h in r.history] == [2, 4, 5]
    assert list(tmp_path.iterdir()) == []  # nothing is written without a workdir
