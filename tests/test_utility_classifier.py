"""The utility classifier: library architectures with one input channel, augmentation,
BatchNorm statistics, determinism, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from genbench.errors import UsageError
from genbench.utility.classifier import (
    ARCHS,
    augment,
    build_classifier,
    classifier_config,
    train_classifier,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny convolutions gain nothing from a second thread, and on a busy 2-core machine two
    # threads made a 10-step training 80x slower (spinning workers); restored afterwards.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("arch", ARCHS)
def test_architectures_take_one_channel(arch):
    torch.manual_seed(0)
    net = build_classifier(arch, 2).eval()
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    with torch.no_grad():
        assert net(torch.randn(3, 1, 32, 32)).shape == (3, 2)
    n_params = sum(p.numel() for p in net.parameters())
    expected = {"resnet18": (11.1e6, 11.3e6), "densenet121": (6.9e6, 7.1e6),
                "resnet18-narrow": (0.6e6, 0.8e6), "tiny": (5e3, 6e4)}[arch]
    assert expected[0] < n_params < expected[1]


def test_config_rejects_unknown():
    with pytest.raises(UsageError, match="unknown classifier 'vgg'"):
        classifier_config("quick", arch="vgg")
    with pytest.raises(UsageError, match="unknown classifier option"):
        classifier_config("quick", epochs=3)


def test_augmentation_identity_and_randomness():
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    still = classifier_config("test", rotate_deg=0, translate=0, scale=0, contrast=0, brightness=0)
    torch.testing.assert_close(augment(x, still, torch.Generator().manual_seed(0)), x,
                               atol=1e-5, rtol=0)
    cfg = classifier_config("test")
    a = augment(x, cfg, torch.Generator().manual_seed(1))
    b = augment(x, cfg, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert (a - x).abs().mean() > 0.02
    assert a.min() >= -1 and a.max() <= 1
    # Brightness alone shifts a flat image by at most the configured amount.
    flat = torch.zeros(64, 1, 8, 8)
    bright = classifier_config("test", rotate_deg=0, translate=0, scale=0, contrast=0,
                               brightness=0.1)
    shift = augment(flat, bright, torch.Generator().manual_seed(2))[:, 0, 0, 0]
    assert shift.abs().max() <= 0.1 + 1e-6 and shift.std() > 0.03


def _easy(n: int, seed: int):
    """Class 1: a bright disc in the centre; class 0: none (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    disc = (((yy - 7.5) ** 2 + (xx - 7.5) ** 2) < 16).float()
    x = -0.5 + 0.2 * torch.randn(n, 1, 16, 16, generator=g) + y.view(n, 1, 1, 1) * disc
    return x.clamp(-1, 1), y.numpy()


def test_learns_an_easy_task_deterministically():
    x, y = _easy(64, 0)
    xt, yt = _easy(40, 1)
    cfg = classifier_config("test", steps=60)
    a = train_classifier(x, y, 2, cfg, seed=5)
    pa = a.predict_proba(xt)
    assert ((pa.argmax(1) == yt).mean()) >= 0.95
    np.testing.assert_allclose(pa.sum(axis=1), 1.0, atol=1e-6)
    b = train_classifier(x, y, 2, cfg, seed=5)
    np.testing.assert_array_equal(pa, b.predict_proba(xt))
    short = classifier_config("test", steps=3)
    c = train_classifier(x, y, 2, short, seed=5).predict_proba(xt)
    d = train_classifier(x, y, 2, short, seed=6).predict_proba(xt)
    assert not np.array_equal(c, d)


def test_batchnorm_statistics_describe_unaugmented_training_images():
    x, y = _easy(48, 0)
    clf = train_classifier(x, y, 2, classifier_config("test", steps=10), seed=0)
    net = clf.net
    conv = net.features.conv0
    bn = net.features.norm0
    with torch.no_grad():
        feats = conv(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bn.running_var, feats.var(dim=(0, 2, 3), unbiased=True),
                               atol=1e-4, rtol=1e-3)
    assert not net.training


def test_training_input_errors():
    x, y = _easy(8, 0)
    with pytest.raises(UsageError, match="no image of class"):
        train_classifier(x, np.zeros(8, dtype=int), 2, classifier_config("test", steps=2), 0)
    with pytest.raises(UsageError, match=">= 2 labelled images"):
        train_classifier(x[:1], y[:1], 2, classifier_config("test", steps=2), 0)
