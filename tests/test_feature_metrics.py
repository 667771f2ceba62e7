"""FRD, MS-SSIM, Vendi and the backbone metrics through the registry, the options and the CLI."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

pytest.importorskip("frd_score")

import genbench  # noqa: E402
from genbench.cli import main  # noqa: E402
from genbench.data.prepare import prepare_dataset  # noqa: E402
from genbench.errors import UsageError  # noqa: E402
from genbench.imageset import ImageSet  # noqa: E402
from genbench.io import write_png_folder  # noqa: E402
from genbench.metrics import backbones as B  # noqa: E402
from genbench.metrics.msssim import set_msssim  # noqa: E402
from genbench.metrics.pipeline import EvalOptions  # noqa: E402
from genbench.metrics.registry import REGISTRY  # noqa: E402
from genbench.metrics.vendi import set_vendi  # noqa: E402


@pytest.fixture(scope="module")
def sets():
    ds = prepare_dataset("pelvic", size=32, n=80, seed=0, use_cache=False)
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(ds.train), generator=g)[:12]
    return ds.test.subset(list(range(12))), ds.train.subset(pick.numpy())


@pytest.fixture(scope="module")
def swav(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "swav_800ep_pretrain.pth.tar"
    torch.save(B.random_state_dict("swav-r50", seed=3), path)
    return path


def test_registered_with_directions_and_families():
    assert REGISTRY["frd"].family == "radiomics" and REGISTRY["frd"].direction == -1 and REGISTRY["frd"].default
    assert REGISTRY["msssim"].direction == -1 and REGISTRY["vendi"].direction == +1
    for name in B.BACKBONES:
        assert REGISTRY.parse(name) == tuple(f"{m}_{name}" for m in B.BACKBONE_METRICS)
        assert not any(REGISTRY[f"{m}_{name}"].default for m in B.BACKBONE_METRICS)
        assert B.BACKBONES[name].short in REGISTRY[f"fd_{name}"].title  # the column names the backbone
    assert {"frd", "msssim", "vendi"} <= set(REGISTRY.default_names())


def test_options(swav):
    opts = EvalOptions(backbones=f"swav-r50:{swav}", metrics="frd")
    assert opts.metrics == ("frd", *(f"{m}_swav-r50" for m in B.BACKBONE_METRICS))
    assert EvalOptions(feature_window=" -160 , 240").feature_window == "-160,240"
    for kwargs, flag in (({"frd_version": "v2"}, "--frd-version"), ({"vendi_kernel": "rbf"}, "--vendi-kernel"),
                         ({"feature_window": "wide"}, "--feature-window"), ({"msssim_pairs": 0}, "--msssim-pairs"),
                         ({"backbones": "resnet18:/x.pth"}, "--backbone")):
        with pytest.raises(UsageError, match=flag):
            EvalOptions(**kwargs)


def test_evaluate_reports_every_feature_metric_with_its_provenance(sets, swav, tmp_path, capsys):
    real, synth = sets
    rep = genbench.evaluate(real, synth, metrics="frd,msssim,vendi", backbones=f"swav-r50:{swav}", floor=True,
                            cache_dir=tmp_path, msssim_pairs=30)
    bad = {m: r.reason for m, r in rep.requested().items() if r.status != "ok"}
    assert not bad, bad
    frd = rep.metrics["frd"]
    assert frd.params["frd_version"] == "v1" and frd.params["n_features_extracted"] == 398
    assert "ln(d²)" in frd.params["log_transform"] and frd.params["frd_score"] and frd.params["pyradiomics"]
    assert frd.value == pytest.approx(np.log(frd.params["frechet_d2"]))
    ms = rep.metrics["msssim"]
    assert ms.params["real_value"] == pytest.approx(set_msssim(real.images, pairs=30).value)
    assert ms.value == pytest.approx(set_msssim(synth.images, pairs=30).value)
    assert ms.params["scales"] == 2  # 32 px: two scales of the 11-tap window
    assert rep.metrics["vendi"].params["real_value"] == pytest.approx(set_vendi(real.images).value)
    fd = rep.metrics["fd_swav-r50"]
    assert fd.params["weights_sha256"] == hashlib.sha256(swav.read_bytes()).hexdigest()
    assert fd.params["feature_window"] == "full" and fd.params["backbone"] == "swav-r50"
    assert rep.metrics["density_swav-r50"].params["nearest_k"] == 5
    # The floor: two real halves, scored with the same functions (features are rows of REAL's).
    for m in ("frd", "msssim", "vendi", "fd_swav-r50", "coverage_swav-r50"):
        assert rep.floor[m].status == "ok", (m, rep.floor[m].reason)
    # Every value carries a bootstrap interval (the replicate functions are checked one by one
    # in the metrics' own tests).
    for m in ("frd", "msssim", "vendi", "fd_swav-r50", "kid_swav-r50", "precision_swav-r50",
              "recall_swav-r50", "density_swav-r50", "coverage_swav-r50"):
        r = rep.metrics[m]
        assert r.ci is not None and r.ci_method and r.ci[0] <= r.value <= r.ci[1], (m, r.value, r.ci)
        assert r.params["bootstrap_replicates"] == 1000
    # The per-image caches were written under the one cache folder.
    assert list((tmp_path / "radiomics").rglob("*.npy"))
    assert list(tmp_path.glob("swav-r50-*.npy"))


def test_identical_sets_give_frd_zero_through_the_pipeline(sets, tmp_path):
    real, _ = sets
    rep = genbench.evaluate(real, real, metrics="frd", cache_dir=tmp_path)
    assert rep.metrics["frd"].value == 0.0 and rep.metrics["frd"].params["identical_statistics"] is True


def test_frd_masks_need_label_maps(sets, tmp_path):
    real, synth = sets
    rep = genbench.evaluate(real, synth, metrics="frd", frd_masks=True, cache_dir=tmp_path)
    res = rep.metrics["frd"]
    assert res.status == "unavailable" and "label maps" in res.reason and "\n" not in res.reason
    labels = np.zeros((len(real), 32, 32), dtype=np.int16)
    labels[:, 6:26, 6:26] = 1
    labeled = [ImageSet(s.images, mapping=s.mapping, meta={"labels": labels[: len(s)]}) for s in (real, synth)]
    rep = genbench.evaluate(*labeled, metrics="frd", frd_masks=True, cache_dir=tmp_path)
    assert rep.metrics["frd"].status == "ok" and rep.metrics["frd"].params["masks"].startswith("organ")
    whole = genbench.evaluate(*labeled, metrics="frd", cache_dir=tmp_path).metrics["frd"].value
    assert rep.metrics["frd"].value != pytest.approx(whole)


def test_a_window_needs_the_same_units_in_both_sets(sets, swav, tmp_path):
    real, synth = sets
    other = ImageSet(synth.images)  # canonical units, not HU
    rep = genbench.evaluate(real, other, metrics="fd_swav-r50", backbones=f"swav-r50:{swav}",
                            feature_window="-160,240", cache_dir=tmp_path)
    assert rep.metrics["fd_swav-r50"].status == "unavailable"
    assert "--feature-window -160,240" in rep.metrics["fd_swav-r50"].reason
    ok = genbench.evaluate(real, synth, metrics="fd_swav-r50", backbones=f"swav-r50:{swav}",
                           feature_window="-160,240", cache_dir=tmp_path).metrics["fd_swav-r50"]
    assert ok.status == "ok" and ok.params["intensity_mapping"].startswith("clip to [-160, 240] HU")


def test_missing_backbone_weights_are_reported_and_the_rest_goes_on(sets, tmp_path):
    real, synth = sets
    rep = genbench.evaluate(real, synth, metrics="msssim,fd_dinov2-vit-b14", msssim_pairs=10,
                            backbones=f"dinov2-vit-b14:{tmp_path / 'absent.pth'}")
    assert rep.metrics["msssim"].status == "ok"
    assert rep.metrics["fd_dinov2-vit-b14"].status == "unavailable"
    assert "never downloads" in rep.metrics["fd_dinov2-vit-b14"].reason
    rep = genbench.evaluate(real, synth, metrics="fd_dinov2-vit-b14")
    assert "--backbone dinov2-vit-b14:PATH" in rep.metrics["fd_dinov2-vit-b14"].reason


def test_cli_wrong_backbone_file_is_one_line_exit_2(sets, swav, tmp_path, capsys):
    real, synth = sets
    write_png_folder(real.images, tmp_path / "r")
    write_png_folder(synth.images, tmp_path / "s")
    for spec, what in ((f"dinov2-vit-b14:{swav}", "not dinov2-vit-b14 weights"),
                       (f"swav-r50:{swav}:{'ab' * 8}", "SHA-256 mismatch")):
        rc = main(["metrics", str(tmp_path / "r"), str(tmp_path / "s"), "--metrics", "msssim",
                   "--backbone", spec, "-q"])
        out, err = capsys.readouterr()
        assert rc == 2, (out, err)
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and what in lines[0] and str(swav) in lines[0], err
