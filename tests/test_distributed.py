"""Evaluation under torchrun: two gloo processes on the CPU give one process's numbers.

One torchrun launch (interpreter start-ups dominate the time) runs a worker that checks the
collectives, the sharded nearest-SSIM engine, sharded Inception features and a split bootstrap
against the same computation on one process *in the same worker* (same thread settings), and
then runs ``genbench metrics`` through the CLI entry point; the test compares that report with
a single-process run of the same command.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from _inception_fixtures import inception_material, structured_images, write_pngs
except ImportError:
    from tests._inception_fixtures import inception_material, structured_images, write_pngs  # noqa: F401

from genbench.cli import main
from genbench.distributed import LOCAL, BootstrapShard, Dist, resolve_device, shard_bootstrap
from genbench.stats import Bootstrap, attach_ci, resample_matrix

# ---------------------------------------------------------------------------------------------
# How work is divided (pure functions of rank and world size: no process group needed).


@pytest.mark.parametrize("n, world, align", [(0, 2, 1), (1, 2, 1), (7, 2, 3), (20, 3, 4), (1000, 8, 32), (5, 8, 1)])
def test_bounds_cover_the_range_in_order_at_batch_multiples(n, world, align):
    ranges = [Dist(rank=r, world_size=world).shard(n, align) for r in range(world)]
    assert [i for rg in ranges for i in rg] == list(range(n))
    for rg in ranges[:-1]:
        assert rg.stop % align == 0 or rg.stop == n
    sizes = [len(rg) for rg in ranges]
    assert max(sizes) - min(sizes) <= align


def test_share_is_a_contiguous_balanced_partition():
    from genbench.metrics.ssim import _tiles

    tiles = _tiles(1000, 64)
    weights = [(i1 - i0) * (i1 - i0 - 1) // 2 if i0 == j0 else (i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in tiles]
    total = sum(weights)
    for world in (2, 3, 8):
        parts = [Dist(rank=r, world_size=world).share(tiles, weights) for r in range(world)]
        assert [t for p in parts for t in p] == tiles  # disjoint, complete, in order
        loads = [sum(weights[tiles.index(t)] for t in p) for p in parts]
        assert max(loads) - min(loads) <= 2 * max(weights), loads
        assert abs(loads[0] - total / world) < max(weights)


def test_one_process_is_the_identity():
    a = np.arange(6.0).reshape(3, 2)
    assert LOCAL.gather_rows(a) is not None and np.array_equal(LOCAL.gather_rows(a), a)
    assert np.array_equal(LOCAL.all_reduce(a, "max"), a)
    assert LOCAL.all_true(False) is False and LOCAL.broadcast_object({"x": 1}) == {"x": 1}
    boot = Bootstrap(replicates=10, seed=1)
    assert shard_bootstrap(boot, LOCAL) is boot
    assert shard_bootstrap(boot, None) is boot
    assert resolve_device("cuda", LOCAL) == torch.device("cuda")
    assert resolve_device("cuda", Dist(rank=1, world_size=2, local_rank=1)) == torch.device("cuda", 1)
    assert resolve_device("cpu", Dist(rank=1, world_size=2, local_rank=1)) == torch.device("cpu")


def test_bootstrap_shards_number_replicates_globally():
    boot = Bootstrap(replicates=11, seed=4)
    full = boot.indices(9, 1)
    rows = []
    for r in range(3):
        part = shard_bootstrap(boot, Dist(rank=r, world_size=3))
        assert isinstance(part, BootstrapShard) and part.enabled and part.params() == boot.params()
        rows.append(part.indices(9, 1))
        if part.replicates > 2:  # sub-ranges are numbered from the shard's start too
            assert np.array_equal(part.indices(9, 1, 1, 2), resample_matrix(9, 4, [part.start + 1], 1))
    assert np.array_equal(np.concatenate(rows), full)
    # A rank with no replicates of its own still knows the bootstrap is on.
    tiny = shard_bootstrap(Bootstrap(replicates=1, seed=0), Dist(rank=0, world_size=2))
    assert tiny.replicates == 0 and tiny.enabled


def test_attach_ci_gathers_a_split_bootstrap():
    from genbench.metrics.result import MetricResult

    class Gathering(BootstrapShard):
        def gather_replicates(self, local):  # what the other rank would contribute
            return np.concatenate([np.asarray(local), np.array([3.0, 4.0])])

    res = MetricResult(name="x", value=1.0)
    attach_ci(res, np.array([0.5, 2.0]), Gathering(replicates=2, seed=0, start=0, total=4), bounds=(0, None))
    assert np.array_equal(res.extra["bootstrap"], [0.5, 2.0, 3.0, 4.0])
    assert res.params["bootstrap_replicates"] == 4


# ---------------------------------------------------------------------------------------------
# Two gloo processes.

METRICS = "is,fid,kid,prc,fds,ds,mem,frd"
WORKER = f"METRICS = {METRICS!r}\n" + textwrap.dedent(
    """
    import contextlib, io, json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from genbench import distributed
    from genbench.distributed import LOCAL, shard_bootstrap
    from genbench.stats import Bootstrap

    weights, real_dir, synth_dir, train_dir, json_out, out = sys.argv[1:7]
    job = distributed.init_from_env("cpu")
    r = job.rank
    res = {"rank": r, "world": job.world_size, "backend": job.backend}

    # Collectives: uneven (and empty) shares, bool rows, reductions, agreement, broadcast.
    local = (np.arange(6 * r, dtype=np.float64).reshape(-1, 2) + 100 * r)
    res["gather"] = job.gather_rows(local).tolist()
    res["gather_bool"] = job.gather_rows(np.array([[r == 0, True]])).tolist()
    res["max"] = job.all_reduce(np.array([r, -r, -np.inf if r else 0.5]), "max").tolist()
    res["min"] = job.all_reduce(np.array([r, -r]), "min").tolist()
    res["all_true"] = [job.all_true(r == 0), job.all_true(True)]
    res["bcast"] = job.broadcast_object({"from": r})

    # Nearest SSIM: sharded tiles vs one process, and how many pairs this rank computed.
    from genbench.metrics import ssim
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(0, 0.5, (23, 1, 20, 20)), -1, 1).astype(np.float32)
    x[5] = x[17]  # an exact duplicate: a maximum of 1 that must survive the combination
    pairs = {"n": 0}
    tile_pairs = ssim._tile_pairs
    def counting(*a, **k):
        pa, pb = tile_pairs(*a, **k)
        pairs["n"] += pa.size
        return pa, pb
    ssim._tile_pairs = counting
    near_d = ssim.nearest_ssim(x, block=4, dist=job)
    res["pairs_here"] = pairs["n"]
    ssim._tile_pairs = tile_pairs
    near_1 = ssim.nearest_ssim(x, block=4)
    res["near_d"], res["near_1"] = near_d.tolist(), near_1.tolist()

    # Cross-set engine: references 0-3 go to rank 0, 4-10 to rank 1; refs 9 and 10 repeat refs 0
    # and 1, so queries 3 and 4 reach their maximum on both ranks: the lowest index must win.
    refs = np.concatenate([x[3:12], x[3:5]])
    cv_d, ci_d = ssim.nearest_ssim_cross(x[:9], refs, block=4, query_block=9, dist=job)
    cv_1, ci_1 = ssim.nearest_ssim_cross(x[:9], refs, block=4, query_block=9)
    res["cross_d"], res["cross_1"] = [cv_d.tolist(), ci_d.tolist()], [cv_1.tolist(), ci_1.tolist()]

    # Bootstrap split across ranks: DS's interval and replicates.
    from genbench.metrics.ds import ds_from_nearest
    boot = Bootstrap(replicates=37, seed=3)
    nr, ns = near_1[:12], near_1[11:]
    d = ds_from_nearest(nr, ns, boot=shard_bootstrap(boot, job))
    one = ds_from_nearest(nr, ns, boot=boot)
    res["ci_d"], res["ci_1"] = list(d.ci), list(one.ci)
    res["reps_d"], res["reps_1"] = d.extra["bootstrap"].tolist(), one.extra["bootstrap"].tolist()
    res["boot_params"] = d.params["bootstrap_replicates"]

    # Inception features: whole batches per rank, gathered in input order.
    from genbench.metrics.inception import InceptionFeatureExtractor
    ext = InceptionFeatureExtractor(weights, device="cpu", batch_size=3)
    imgs = torch.from_numpy(x[:7])
    f_d, _ = ext.features(imgs, use_cache=False, dist=job)
    f_1 = ext.extract(imgs)
    res["feat_equal"] = bool(np.array_equal(f_d.pool3, f_1.pool3) and np.array_equal(f_d.logits, f_1.logits))
    res["feat_forward"] = ext.n_forward_images - 7

    # Opting out: rank 0 alone evaluates (as inside `if accelerator.is_main_process:`).
    if r == 0:
        import genbench
        alone = genbench.evaluate(torch.from_numpy(x[:8]), torch.from_numpy(x[8:16]), metrics="ds",
                                  distributed=False, bootstrap=0)
        res["alone"] = [alone.options.world_size, alone.metrics["ds"].status]
    job.barrier()

    # The command line, as torchrun would start it; which rank runs t-SNE, what evaluate() returns.
    from genbench.cli import main
    from genbench.metrics import fds, pipeline
    calls = {"tsne": 0}
    tsne = fds.tsne_embed
    def counting_tsne(*a, **k):
        calls["tsne"] += 1
        return tsne(*a, **k)
    fds.tsne_embed = counting_tsne
    from genbench.metrics import frd
    shared_radiomics = frd._radiomic_features_shared
    def counting_radiomics(*a, **k):
        calls["radiomics_shared"] = calls.get("radiomics_shared", 0) + 1
        return shared_radiomics(*a, **k)
    frd._radiomic_features_shared = counting_radiomics
    evaluate = pipeline.evaluate
    def recording(*a, **k):
        rep = evaluate(*a, **k)
        res["report"] = {p: {n: (v.status, v.value) for n, v in getattr(rep, p).items()} for p in ("metrics", "floor")}
        return rep
    pipeline.evaluate = recording
    draws = {"n": 0}
    shard_indices = distributed.BootstrapShard.indices
    def counting_indices(self, *a, **k):
        rows = shard_indices(self, *a, **k)
        draws["n"] += len(rows)
        return rows
    distributed.BootstrapShard.indices = counting_indices
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(["metrics", real_dir, synth_dir, "--metrics", METRICS, "--fds-seeds", "1", "--train", train_dir,
                   "--inception-weights", weights, "--device", "cpu", "--floor", "--batch-size", "4",
                   "--bootstrap", "50", "--no-cache", "--json", json_out])
    res["rc"], res["stdout"], res["stderr"] = rc, so.getvalue(), se.getvalue()
    res["tsne_calls"] = calls["tsne"]
    res["radiomics_shared_calls"] = calls.get("radiomics_shared", 0)
    res["draws"] = draws["n"]
    with open(f"{out}.{r}.json", "w") as fh:
        json.dump(res, fh)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


@pytest.mark.timeout(400)  # two interpreter start-ups: ~25 s idle, longer on a busy 2-core box
def test_two_gloo_processes_give_one_process_numbers(inception_material, tmp_path, capsys):
    m = inception_material
    # A training set holding half of the synthetic images: mem has copies to find.
    train_dir = write_pngs(np.concatenate([m.synth_u8[:10], structured_images(10, 32, seed=3)]), tmp_path / "train")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    two_json = tmp_path / "two" / "metrics.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", NUMBA_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), str(script), str(m.weights), str(m.real_dir), str(m.synth_dir),
         str(train_dir), str(two_json), str(tmp_path / "out")],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"out.{r}.json").read_text()) for r in (0, 1))

    assert (r0["world"], r0["backend"], r1["rank"]) == (2, "gloo", 1)
    # Collectives: rank order = input order, zero-row shares, bools, exact reductions.
    assert r0["gather"] == r1["gather"] == [[100.0, 101.0], [102.0, 103.0], [104.0, 105.0]]
    assert r0["gather_bool"] == [[True, True], [False, True]]
    assert r0["max"] == r1["max"] == [1.0, 0.0, 0.5] and r0["min"] == [0.0, -1.0]
    assert r0["all_true"] == r1["all_true"] == [False, True]
    assert r0["bcast"] == r1["bcast"] == {"from": 0}

    # Nearest SSIM: bitwise one process's maxima on both ranks, each rank about half the pairs.
    assert r0["near_d"] == r0["near_1"] == r1["near_d"]
    assert r0["near_d"][5] == r0["near_d"][17] == pytest.approx(1.0, abs=1e-6)
    total = 23 * 22 // 2
    assert r0["pairs_here"] + r1["pairs_here"] == total
    assert max(r0["pairs_here"], r1["pairs_here"]) < 0.65 * total

    # Cross-set engine: values bitwise, indices equal, the lowest index across ranks on a tie.
    assert r0["cross_d"] == r0["cross_1"] == r1["cross_d"]
    assert r0["cross_d"][1][3:5] == [0, 1]

    # Bootstrap: the same replicates in the same order, so the same interval, whatever K.
    assert r0["reps_d"] == r0["reps_1"] == r1["reps_d"] and len(r0["reps_d"]) == 37
    assert r0["ci_d"] == r0["ci_1"] and r0["boot_params"] == 37

    assert r0["alone"] == [1, "ok"]

    # Features: bitwise, and each rank pushed only its own share through the network.
    assert r0["feat_equal"] and r1["feat_equal"]
    assert r0["feat_forward"] == 3 and r1["feat_forward"] == 4

    # The CLI: rank 0 alone prints and writes; the report records the job.
    assert r0["rc"] == r1["rc"] == 0, r0["stderr"] + r1["stderr"]
    assert "genbench metrics" in r0["stdout"] and r1["stdout"] == "" and r1["stderr"] == ""
    assert r0["tsne_calls"] == 2 and r1["tsne_calls"] == 0  # FDS (model and floor) on rank 0 only
    # FRD divides its radiomic extraction: both ranks take part (real and synthetic sets; the floor's
    # sets are rows of the real one).
    assert r0["radiomics_shared_calls"] == r1["radiomics_shared_calls"] == 2
    assert r1["report"] == r0["report"]  # every rank's evaluate() returns rank 0's results
    # Bootstrap replicates of the distributed metrics are split: 50 replicates, 25 per rank.
    assert r0["draws"] == r1["draws"] > 0
    two = json.loads(two_json.read_text())
    assert two["options"]["world_size"] == 2 and two["options"]["dist_backend"] == "gloo"

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting: the same floating-point path
    try:
        one_json = tmp_path / "one.json"
        rc = main(["metrics", str(m.real_dir), str(m.synth_dir), "--metrics", METRICS, "--train", str(train_dir),
                   "--fds-seeds", "1", "--inception-weights", str(m.weights), "--device", "cpu", "--floor",
                   "--batch-size", "4", "--bootstrap", "50", "--no-cache", "--json", str(one_json), "-q"])
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    assert rc == 0
    one = json.loads(one_json.read_text())
    assert one["options"]["world_size"] == 1 and one["options"]["dist_backend"] is None
    for part in ("metrics", "floor"):
        for name in ("is", "fid", "kid", "precision", "recall", "fds", "ds", "mem", "frd"):
            a, b = one[part][name], two[part][name]
            assert a["status"] == b["status"] == "ok", (part, name, a["reason"], b["reason"])
            assert _rel(a["value"], b["value"]) <= 1e-9, (part, name, a["value"], b["value"])
            if a.get("std") is not None:
                assert math.isclose(a["std"], b["std"], rel_tol=1e-9, abs_tol=1e-12)
            assert a["ci"] is not None and len(a["ci"]) == 2, (part, name)
            for lo_hi_a, lo_hi_b in zip(a["ci"], b["ci"]):  # replicates split across ranks: same CI
                assert math.isclose(lo_hi_a, lo_hi_b, rel_tol=1e-9, abs_tol=1e-12), (part, name, a["ci"], b["ci"])
        for key in ("nearest_ssim_real", "nearest_ssim_synth"):  # bitwise
            assert one[part]["ds"][key] == two[part]["ds"][key]
        for key in ("nearest_train_ssim_real", "nearest_train_ssim_synth", "nearest_train_pearson_synth"):
            assert one[part]["mem"][key] == two[part]["mem"][key]
    assert two["metrics"]["mem"]["value"] >= 0.4  # the copies were found
