"""Shared test material for the Inception metrics: random weights and small PNG folders.

The weights are built once per test session (module-level memo, so every test module that
imports the fixtures shares one file): Kaiming-normal convolutions, mild random BatchNorm
statistics, and a final layer calibrated on the test images so that the logits differ between
images (with random weights the pool3 features of different images are highly correlated, which
would leave IS at ~1.0003 and make the IS comparison vacuous).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.metrics.inception import random_inception_state_dict

N_REAL, N_SYNTH, SIZE = 20, 20, 32
VAR_FLOOR = 0.1

_MEMO: dict[str, object] = {}


def structured_images(n: int, size: int, seed: int, style: str = "real") -> np.ndarray:
    """uint8 (n, size, size): ellipses on a smooth background with texture and noise.

    ``style="synth"`` shifts contrast, blurs edges and adds more noise, so the two sets differ.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    out = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        img = 0.3 * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)
        for _ in range(rng.integers(1, 4)):
            cx, cy = rng.uniform(-0.6, 0.6, 2)
            ax, ay = rng.uniform(0.15, 0.6, 2)
            r2 = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
            edge = 0.08 if style == "real" else 0.25
            img += rng.uniform(0.3, 1.0) / (1 + np.exp(np.minimum((r2 - 1) / edge, 50.0)))
        img += 0.15 * np.sin(rng.uniform(3, 12) * xx + rng.uniform(0, 6)) * np.cos(rng.uniform(3, 12) * yy)
        img += rng.normal(0, 0.03 if style == "real" else 0.08, img.shape)
        if style == "synth":
            img = 0.8 * img + 0.1
        out[i] = np.clip((img + 0.5) * 180, 0, 255).astype(np.uint8)
    return out


def write_pngs(images: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im, mode="L").save(folder / f"img_{i:04d}.png")
    return folder


def canonical(images_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_u8.astype(np.float32) / 127.5 - 1.0)[:, None]


@dataclass
class InceptionMaterial:
    weights: Path
    real_dir: Path
    synth_dir: Path
    real_u8: np.ndarray
    synth_u8: np.ndarray
    cache_dir: Path  # a feature cache shared by the tests that only need it for speed
    calibration_pool3: np.ndarray  # pool3 features of 16 test images (computed while building)


def _build(root: Path) -> InceptionMaterial:
    real = structured_images(N_REAL, SIZE, seed=1, style="real")
    synth = structured_images(N_SYNTH, SIZE, seed=2, style="synth")
    real_dir = write_pngs(real, root / "real")
    synth_dir = write_pngs(synth, root / "synth")

    state = random_inception_state_dict(seed=0)
    raw = root / "raw-weights.pth"
    torch.save(state, raw)
    # Data-dependent calibration (as BatchNorm training would do): set every BN's running
    # statistics to the batch statistics of calibration images, one train-mode forward of
    # torch-fidelity's own module. Without it a random deep ReLU net maps all images to nearly
    # the same features (FID ~ 0.05, IS ~ 1), and agreement tests would compare near-constants.
    # A variance floor (VAR_FLOOR, added to the running variances afterwards) keeps near-constant
    # channels from amplifying float32 rounding up to 30x per layer, which put torch-fidelity's
    # own float32 features 1.3e-4 away from a float64 forward; with it both are within ~1e-5.
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(raw))
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # cumulative average: one batch -> its exact statistics
            mod.reset_running_stats()
    net.train()
    calib = np.concatenate([real[:6], synth[:6]])
    with torch.no_grad():
        net(torch.from_numpy(calib)[:, None].expand(-1, 3, -1, -1).contiguous())
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var += VAR_FLOOR
        net.eval()  # the final network's pool3 features (the final layer does not affect them)
        (feats,) = net(torch.from_numpy(calib)[:, None].expand(-1, 3, -1, -1).contiguous())
    feats = feats.double().numpy()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    raw.unlink()
    # Final layer: random mixtures of the whitened top principal components of pool3, with the
    # common component removed, so that the logits (and IS) vary with the image.
    mu = feats.mean(0)
    _, s, vt = np.linalg.svd(feats - mu, full_matrices=False)
    k = 10
    whiten = vt[:k] / (s[:k, None] / np.sqrt(len(feats)))
    rng = np.random.default_rng(0)
    w = 2.5 * rng.normal(size=(1008, k)) / np.sqrt(k) @ whiten
    w -= np.outer(w @ mu, mu) / (mu @ mu)
    state["fc.weight"] = torch.from_numpy(w.astype(np.float32))
    weights = root / "random-inception.pth"
    torch.save(state, weights)
    return InceptionMaterial(weights, real_dir, synth_dir, real, synth, root / "feature-cache",
                             feats.astype(np.float32))


@pytest.fixture(scope="session")
def inception_material(tmp_path_factory: pytest.TempPathFactory) -> InceptionMaterial:
    if "material" not in _MEMO:
        _MEMO["material"] = _build(tmp_path_factory.mktemp("inception"))
    return _MEMO["material"]  # type: ignore[return-value]
