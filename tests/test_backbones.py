"""Backbones from local weight files: random weights written on the fly, never downloaded.

Each published layout (Meta's DINOv2 file, Meta's SwAV file, RadImageNet's PyTorch file) is
written with random weights; genbench's features must equal the reference architecture's
forward (timm / torchvision, loaded here independently) on the same preprocessing. A wrong
file (bad hash, wrong architecture, not a state dict) is one clear error.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genbench.errors import InputError, UsageError, WeightsUnavailableError
from genbench.metrics import backbones as B

timm = pytest.importorskip("timm")

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in ("dinov2-vit-b14", "swav-r50", "radimagenet-r50"):
        files[name] = folder / f"{name}.pth"
        torch.save(B.random_state_dict(name, seed=1), files[name])
    return files


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 40, 40, generator=g) * 2 - 1
    x[:, :, 10:30, 10:30] *= 0.3  # some structure, not only noise
    return x


def _u8(x):
    return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255)


def _reference_dinov2(name, path, x):
    """timm's DINOv2 architecture at 224 px; pos-embed resampled as DINOv2's interpolate_pos_encoding."""
    state = torch.load(path, weights_only=True)
    state.pop("mask_token")
    pe = state["pos_embed"]
    m = int(math.sqrt(pe.shape[1] - 1))
    patch = pe[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    patch = torch.nn.functional.interpolate(patch, scale_factor=((16 + 0.1) / m, (16 + 0.1) / m),
                                            mode="bicubic", antialias=False)
    state["pos_embed"] = torch.cat([pe[:, :1], patch.permute(0, 2, 3, 1).reshape(1, 256, -1)], 1)
    arch = {"dinov2-vit-b14": "vit_base_patch14_dinov2", "dinov2-vit-l14": "vit_large_patch14_dinov2"}[name]
    net = timm.create_model(arch, pretrained=False, img_size=224, num_classes=0).eval()
    net.load_state_dict(state)
    from torchvision.transforms.v2 import functional as TF

    rgb = _u8(x).expand(-1, 3, -1, -1) / 255.0
    inp = TF.resize(rgb, [224, 224], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    with torch.no_grad():
        return net((inp - MEAN) / STD).numpy()


def _reference_resnet(name, path, x):
    from torchvision.models import resnet50
    from torchvision.transforms.v2 import functional as TF

    state = torch.load(path, weights_only=True)
    children = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    mapped = {}
    for k, v in state.items():
        if name == "swav-r50":
            k = k.removeprefix("module.")
            if k.startswith(("projection_head", "prototypes")):
                continue
        else:
            _, idx, rest = k.split(".", 2)
            k = f"{children[int(idx)]}.{rest}"
        mapped[k] = v
    net = resnet50(weights=None)
    net.fc = torch.nn.Identity()
    net.load_state_dict(mapped)
    net.eval()
    u8 = _u8(x).expand(-1, 3, -1, -1)
    if name == "radimagenet-r50":  # RadImageNet's example: (x - 127.5) * 2 / 255, cv2 bilinear resize
        inp = F.interpolate((u8 - 127.5) * 2 / 255, size=(224, 224), mode="bilinear", align_corners=False)
    else:
        inp = TF.resize(u8 / 255.0, [224, 224], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        inp = (inp - MEAN) / STD
    with torch.no_grad():
        return net(inp).numpy()


@pytest.mark.parametrize("name", ["dinov2-vit-b14", "swav-r50", "radimagenet-r50"])
def test_features_equal_the_reference_architecture(weight_files, images, name):
    ext = B.load_backbone(B.parse_backbone(f"{name}:{weight_files[name]}"))
    got, hit = ext.features(images, window=B.FeatureWindow(), use_cache=False)
    assert not hit and got.shape == (3, B.BACKBONES[name].dim)
    ref = (_reference_dinov2 if name.startswith("dinov2") else _reference_resnet)(name, weight_files[name], images)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    # The features are not degenerate: the images are told apart.
    assert float(np.abs(got[0] - got[1]).max()) > 1e-3 * float(np.abs(got).max())
    p = ext.params(B.FeatureWindow())
    assert p["weights_sha256"] == B_sha(weight_files[name]) and p["backbone"] == name


def B_sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_dinov2_large_equals_the_reference_architecture(tmp_path, images):
    path = tmp_path / "l14.pth"
    torch.save(B.random_state_dict("dinov2-vit-l14", seed=2), path)
    ext = B.load_backbone(B.parse_backbone(f"dinov2-vit-l14:{path}"))
    got, _ = ext.features(images, window=B.FeatureWindow(), use_cache=False)
    ref = _reference_dinov2("dinov2-vit-l14", path, images)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_timm_layout_without_mask_token_loads_too(tmp_path, images, weight_files):
    state = B.random_state_dict("dinov2-vit-b14", seed=1, official_format=False)
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    a, _ = B.load_backbone(B.parse_backbone(f"dinov2-vit-b14:{path}")).features(
        images, window=B.FeatureWindow(), use_cache=False)
    b, _ = B.load_backbone(B.parse_backbone(f"dinov2-vit-b14:{weight_files['dinov2-vit-b14']}")).features(
        images, window=B.FeatureWindow(), use_cache=False)
    np.testing.assert_array_equal(a, b)


def test_sha256_is_checked(weight_files):
    path = weight_files["swav-r50"]
    sha = B_sha(path)
    B.load_backbone(B.parse_backbone(f"swav-r50:{path}:{sha[:12]}"))  # a matching prefix is accepted
    with pytest.raises(InputError, match="SHA-256 mismatch") as err:
        B.load_backbone(B.parse_backbone(f"swav-r50:{path}:{'0' * 64}"))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("name,other", [("dinov2-vit-b14", "swav-r50"), ("swav-r50", "dinov2-vit-b14"),
                                        ("radimagenet-r50", "dinov2-vit-b14")])
def test_a_file_of_another_architecture_is_one_line(weight_files, name, other):
    with pytest.raises(InputError, match=f"not {name} weights") as err:
        B.load_backbone(B.parse_backbone(f"{name}:{weight_files[other]}"))
    assert "\n" not in str(err.value) and str(weight_files[other]) in str(err.value)


def test_dinov2_large_file_is_refused_as_base(tmp_path):
    # Same key names, other shapes: refused by shape, naming a tensor.
    state = {k: v for k, v in B.random_state_dict("dinov2-vit-b14").items()}
    state["blocks.0.attn.qkv.weight"] = torch.zeros(3 * 1024, 1024)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(InputError, match="of another shape"):
        B.load_backbone(B.parse_backbone(f"dinov2-vit-b14:{path}"))


def test_not_a_state_dict_and_missing_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(InputError, match="cannot load backbone weights"):
        B.load_backbone(B.parse_backbone(f"swav-r50:{bad}"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load"):
        B.load_backbone(B.parse_backbone(f"swav-r50:{junk}"))
    with pytest.raises(WeightsUnavailableError, match="never downloads"):
        B.load_backbone(B.parse_backbone(f"swav-r50:{tmp_path / 'absent.pth'}"))


def test_option_parsing():
    req = B.parse_backbone("SwAV-R50:/a/b.pth")
    assert (req.name, str(req.path), req.sha256) == ("swav-r50", "/a/b.pth", None)
    assert B.parse_backbone("swav-r50:/a/b.pth:DEADBEEF").sha256 == "deadbeef"
    for bad in ("swav-r50", "resnet18:/x.pth", ":x"):
        with pytest.raises(UsageError, match="--backbone"):
            B.parse_backbone(bad)
    assert B.parse_feature_window("full").is_full
    assert B.parse_feature_window("-160, 240") == B.FeatureWindow(-160.0, 240.0)
    for bad in ("abc", "5,1", "1,2,3", "nan,1"):
        with pytest.raises(UsageError, match="--feature-window"):
            B.parse_feature_window(bad)


def test_a_soft_tissue_window_gives_soft_tissue_more_grey_levels():
    from genbench.data.presets import get_preset

    mapping = get_preset("pelvic").mapping  # HU [-1024, 3012] <-> [-1, 1]
    hu = torch.linspace(-100, 100, 1000).view(1, 1, 20, 50)  # soft tissue
    canon = mapping.to_canonical(hu)
    full = B.FeatureWindow().apply(canon, mapping)
    soft = B.parse_feature_window("-160,240").apply(canon, mapping)
    n_full, n_soft = len(torch.unique(full)), len(torch.unique(soft))
    assert 10 <= n_full <= 15  # the README's "about 13 grey levels"
    assert n_soft > 8 * n_full
    # The window is in the set's units: -160 HU -> 0, 240 HU -> 255.
    edges = B.parse_feature_window("-160,240").apply(mapping.to_canonical(torch.tensor([[[[-160.0, 240.0]]]])), mapping)
    assert edges.flatten().tolist() == [0, 255]


def test_backbone_metrics_use_prdc_definitions(capsys):
    prdc_pkg = pytest.importorskip("prdc")
    rng = np.random.default_rng(0)
    real, synth = rng.normal(size=(30, 16)), rng.normal(size=(25, 16)) + 0.3
    res = B.backbone_metrics(real, synth, common={"backbone": "x"})
    want = prdc_pkg.compute_prdc(real, synth, 5)
    capsys.readouterr()
    for m in ("precision", "recall", "density", "coverage"):
        assert res[m].value == pytest.approx(float(want[m]), abs=1e-12)
    from genbench.metrics.fidelity import frechet_distance

    assert res["fd"].value == pytest.approx(frechet_distance(real, synth))
    assert res["kid"].params["subset_size"] == 25 and res["kid"].params["gamma"] == "1/16"
    assert all(r.params["backbone"] == "x" for r in res.values())
