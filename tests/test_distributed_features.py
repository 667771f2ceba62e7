"""Backbone and radiomic features under torchrun (two gloo processes) equal one process's.

Slow (a ResNet-50 and pyradiomics in two fresh interpreters): ``pytest -m slow``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    torch.set_num_threads(1)
    from genbench import distributed
    from genbench.metrics.backbones import BackboneRequest, load_backbone, parse_feature_window
    from genbench.metrics.frd import radiomic_features

    weights, cache, out = sys.argv[1:4]
    job = distributed.init_from_env("cpu")
    res = {"rank": job.rank}
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, (6, 1, 32, 32)).astype(np.float32))

    ext = load_backbone(BackboneRequest("swav-r50", Path(weights)), device="cpu")
    ext.batch_size = 2
    window = parse_feature_window(None)
    f_d, hit1 = ext.features(x[:5], window=window, cache_dir=cache, dist=job)
    n_forward = ext.n_forward_images
    job.barrier()  # rank 0 has written the cache
    f_c, hit2 = ext.features(x[:5], window=window, cache_dir=cache, dist=job)  # every rank hits now
    f_1 = ext.extract(window.apply(x[:5]))
    res["backbone_equal"] = bool(np.array_equal(f_d, f_1) and np.array_equal(f_c, f_1))
    res["hits"], res["forward"] = [hit1, hit2], n_forward

    # Rows 3-5 have empty masks: rank 1's whole share is skipped by pyradiomics.
    masks = np.zeros((6, 32, 32), bool)
    masks[:3, 8:24, 8:24] = True
    r_d = radiomic_features(x, masks=masks, use_cache=False, n_jobs=1, dist=job)
    r_1 = radiomic_features(x, masks=masks, use_cache=False, n_jobs=1)
    res["radiomics_equal"] = bool(np.array_equal(r_d.values, r_1.values) and r_d.names == r_1.names)
    res["kept"], res["n_extracted"] = r_d.kept.tolist(), [r_d.n_extracted, r_1.n_extracted]
    with open(f"{out}.{job.rank}.json", "w") as fh:
        json.dump(res, fh)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_backbone_and_radiomic_features_split_across_two_processes(tmp_path):
    pytest.importorskip("radiomics")
    from genbench.metrics.backbones import random_state_dict

    weights = tmp_path / "swav.pth"
    torch.save(random_state_dict("swav-r50"), weights)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), str(script), str(weights), str(tmp_path / "cache"),
         str(tmp_path / "out")],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"out.{r}.json").read_text()) for r in (0, 1))
    for r in (r0, r1):
        assert r["backbone_equal"] and r["radiomics_equal"]
        assert r["hits"] == [False, True]
        assert r["kept"] == [True, True, True, False, False, False]
    # 5 images in batches of 2: rank 0 takes one batch, rank 1 the other two (3 images).
    assert (r0["forward"], r1["forward"]) == (2, 3)
    assert r0["n_extracted"] == [6, 6]  # both ranks' extractions, skipped images included, as one process
    assert len(list((tmp_path / "cache").glob("swav-r50-*.npy"))) == 1  # written once, by rank 0
