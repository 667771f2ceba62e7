"""`genbench run` under torchrun (two gloo processes): rank 0 alone prints and writes, and the
evaluate stage gives what one process gives on the same samples.

Slow (a DDP training of a tiny DDPM in two fresh interpreters, then one more run): ``pytest -m slow``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ARGS = ["--dataset", "pelvic", "--models", "ddpm", "--size", "16", "--steps", "4", "--n-images", "40",
        "--metrics", "ds,fds", "--fds-seeds", "1", "--no-figures", "--device", "cpu",
        "--set", "checkpoint_every=2", "--set", "batch_size=8", "--set", "ddpm.ch=16",
        "--set", "ddpm.ch_mult=[1,2]", "--set", "ddpm.groups=8", "--set", "ddpm.attn_resolutions=[]",
        "--set", "ddpm.sample_steps=4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_run_under_torchrun_evaluates_like_one_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    out = tmp_path / "runs"
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "--log-dir", str(logs), "--redirects", "3",
         "-m", "genbench", "run", *ARGS, "--out", str(out)],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=800)
    rank_logs = {p.parent.name + "/" + p.name: p.read_text() for p in logs.rglob("*.log")}
    assert proc.returncode == 0, proc.stderr[-3000:] + str({k: v[-2000:] for k, v in rank_logs.items()})
    assert "ddpm" in rank_logs["0/stdout.log"] and "evaluated in" in rank_logs["0/stderr.log"]
    assert rank_logs["1/stdout.log"] == "" and rank_logs["1/stderr.log"] == ""

    root = out / "pelvic" / "quick"
    two = {k: json.loads((root / k / "metrics.json").read_text()) for k in ("ddpm", "floor")}
    for doc in two.values():
        assert doc["options"]["world_size"] == 2 and doc["options"]["dist_backend"] == "gloo"
    # One process on the same samples: reopen only the evaluate stages (train and sample stay cached).
    (root / "ddpm" / ".stages" / "evaluate.json").unlink()
    (root / "floor" / ".stages" / "floor.json").unlink()
    single = subprocess.run([sys.executable, "-m", "genbench", "run", *ARGS, "--out", str(out), "-q"],
                            check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    for k, doc in two.items():
        one = json.loads((root / k / "metrics.json").read_text())
        assert one["options"]["world_size"] == 1
        assert one["synth"]["sha256"] == doc["synth"]["sha256"]  # the same samples were scored
        for m in ("ds", "fds"):
            assert one["metrics"][m]["status"] == "ok"
            assert one["metrics"][m]["value"] == doc["metrics"][m]["value"], (k, m)
        assert one["metrics"]["ds"]["nearest_ssim_synth"] == doc["metrics"]["ds"]["nearest_ssim_synth"]
