"""Shared settings for the pipeline tests: two real registered generators, tiny and fast."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from genbench.runner import Reporter, RunConfig

MODELS = ["pggan", "ddpm"]
# Tiny networks so a test run takes seconds; per-model options use the model.key=value form.
OVERRIDES = {
    "checkpoint_every": 2,
    "batch_size": 8,
    "ddpm.ch": 16,
    "ddpm.ch_mult": [1, 2],
    "ddpm.groups": 8,
    "ddpm.attn_resolutions": [],
    "ddpm.sample_steps": 4,
}
CLI_ARGS = [
    "--dataset", "pelvic", "--models", ",".join(MODELS), "--size", "16", "--steps", "6",
    "--n-images", "40", "--metrics", "fid,ds", "--no-figures", "-q",
    *[a for k, v in OVERRIDES.items()
      for a in ("--set", f"{k}={str(v).replace(' ', '').lower() if isinstance(v, list) else v}")],
]


def config(out: Path, **changes) -> RunConfig:
    base = {
        "dataset": "pelvic", "models": list(MODELS), "out": out, "size": 16, "steps": 6,
        "n_images": 40, "metrics": ("fid", "ds"), "overrides": dict(OVERRIDES), "figures": False,
    }
    base.update(changes)
    return RunConfig(**base)


def reporter(terminal: bool = False) -> tuple[Reporter, io.StringIO]:
    """A Reporter writing to a buffer; ``terminal=True`` also draws the progress bars."""
    buf = io.StringIO()
    return Reporter(console=Console(file=buf, width=300, force_terminal=terminal)), buf


def run_and_kill(cli_args: list[str], out: Path, root: Path, trigger: str, env: dict,
                 timeout: float = 240.0) -> int:
    """Start `genbench run *cli_args --out out` in a subprocess and SIGKILL it once ``trigger`` (a
    glob under ``root``) matches; returns its exit status (-9 when it was killed)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "genbench", "run", *cli_args, "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            if root.is_dir() and any(root.glob(trigger)):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait(timeout=60)
    return rc


def tensor_bytes(path: Path) -> dict[str, bytes]:
    """Every tensor of a safetensors file as raw bytes (bitwise comparison of weights)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        return {k: fh.get_tensor(k).tobytes() for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
