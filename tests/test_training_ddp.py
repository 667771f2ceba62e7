"""The engine's distributed path: two CPU processes (gloo) started by torchrun.

Two ranks with batch B each must train exactly like one process with batch 2B (DDP averages
the ranks' mean-loss gradients; the data stream gives rank r the r-th half of each global
batch), end with identical weights on both ranks, and write one checkpoint and one log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

WORKER = textwrap.dedent(
    """
    import json, sys, torch
    from torch import nn
    from genbench.training import EMATarget, EngineConfig, TrainingTask, fit_task

    torch.set_num_threads(1)

    class Task(TrainingTask):
        def __init__(self):
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
            self.ema = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
            self.ema.load_state_dict(self.net.state_dict())
        def modules(self):
            return {"net": self.net}
        def build_optimizers(self, modules):
            return {"net": torch.optim.SGD(modules["net"].parameters(), lr=0.1, momentum=0.9)}
        def ema_targets(self):
            return {"net": EMATarget(self.ema, 0.8)}
        def train_step(self, batch, step, engine):
            x, y = batch[:, :4], batch[:, 4:]
            loss = ((engine.module("net")(x) - y) ** 2).mean()
            opt = engine.optimizer("net")
            opt.zero_grad()
            engine.backward(loss)
            opt.step()
            return {"loss": loss.item(), "rank": float(engine.rank)}

    mode, batch, workdir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 4, generator=g)
    data = torch.cat([x, torch.sin(x.sum(1, keepdim=True))], 1)
    task = Task()
    cfg = EngineConfig(steps=6, batch_size=batch, seed=2, device="cpu", log_every=1,
                       checkpoint_every=3)
    res = fit_task(task, data, cfg, workdir=workdir)
    import torch.distributed as dist
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    state = {k: v.tolist() for k, v in task.net.state_dict().items()}
    state.update({"ema." + k: v.tolist() for k, v in task.ema.state_dict().items()})
    with open(f"{out}.{rank}.json", "w") as fh:
        json.dump({"world": world, "weights": state, "history": res.history}, fh)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], tmp_path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.timeout(300)  # three interpreter start-ups: 12 s idle, 35 s on a busy 2-core box
def test_two_gloo_processes_match_one_process_with_double_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    _run([sys.executable, str(script), "single", "8", str(tmp_path / "w1"), str(tmp_path / "one")],
         tmp_path)
    _run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(script), "ddp", "4", str(tmp_path / "w2"), str(tmp_path / "two")],
        tmp_path,
    )
    one = json.loads((tmp_path / "one.0.json").read_text())
    r0 = json.loads((tmp_path / "two.0.json").read_text())
    r1 = json.loads((tmp_path / "two.1.json").read_text())
    assert one["world"] == 1 and r0["world"] == 2 and r1["world"] == 2
    for k, v in r0["weights"].items():
        a, b, c = torch.tensor(v), torch.tensor(r1["weights"][k]), torch.tensor(one["weights"][k])
        assert torch.equal(a, b), f"ranks disagree on {k}"
        assert torch.allclose(a, c, atol=1e-5), f"{k}: DDP differs from single process"
    # Only rank 0 keeps history; losses are averaged over ranks (mean of rank ids = 0.5).
    assert r1["history"] == []
    assert [h["rank"] for h in r0["history"]] == [0.5] * 6
    assert all(abs(h["loss"] - g["loss"]) < 1e-5 for h, g in zip(r0["history"], one["history"]))
    ckpts = sorted(p.name for p in (tmp_path / "w2" / "checkpoints").iterdir())
    assert ckpts == ["ckpt-00000003.pt", "ckpt-00000006.pt"]
    state = torch.load(tmp_path / "w2" / "checkpoints" / "ckpt-00000006.pt", weights_only=True)
    assert state["world_size"] == 2 and state["data_position"] == 6 * 8
