"""The fast Inception path against torch-fidelity's FeatureExtractorInceptionV3; weights; cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

try:
    from _inception_fixtures import canonical, inception_material, structured_images
except ImportError:  # tests/ imported as a package
    from tests._inception_fixtures import canonical, inception_material, structured_images  # noqa: F401

from genbench.errors import InputError, WeightsUnavailableError
from genbench.metrics import inception as inc


def test_random_weights_give_distinct_features(inception_material):
    # The premise of every comparison: features differ between images (no collapse to ~1e-8).
    f = inception_material.calibration_pool3
    assert f.std(axis=0).mean() > 1e-3
    assert np.abs(f).mean() > 1e-2


def test_fast_features_equal_torch_fidelity(inception_material):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(inception_material.weights))
    ext = inc.InceptionFeatureExtractor(inception_material.weights, batch_size=2)
    # Non-square odd size; the grayscale set goes in canonical float form (quantised inside).
    gray = torch.from_numpy(np.ascontiguousarray(structured_images(2, 45, seed=5)[:, :37, :]))[:, None]
    rgb = torch.randint(0, 256, (1, 3, 37, 45), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    rgb[:, 1] = gray[0, 0]  # channels differ, content is not pure noise
    with torch.no_grad():
        ref_gray = ref(gray.expand(-1, 3, -1, -1).contiguous())
        ref_rgb = ref(rgb)
    for ours, (r_pool, r_logit) in ((ext.extract(gray.float() / 127.5 - 1.0), ref_gray),
                                    (ext.extract(rgb), ref_rgb)):
        assert np.abs(ours.pool3 - r_pool.numpy()).max() <= 1e-4
        # The test weights' final layer is calibrated (large weights), so logits are compared
        # relative to their scale.
        scale = max(1.0, float(r_logit.abs().max()))
        assert np.abs(ours.logits - r_logit.numpy()).max() <= 1e-4 * scale


@pytest.mark.parametrize("n_in", [1, 2, 31, 32, 64, 299, 300, 512])
def test_resize_matrix_equals_torch_fidelity_resize(n_in):
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    x = torch.rand(2, 1, n_in, n_in + 3, generator=torch.Generator().manual_seed(n_in)) * 255
    ref = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    ours = inc.tf1_resize_matrix(n_in, 299) @ x @ inc.tf1_resize_matrix(n_in + 3, 299).T
    assert torch.allclose(ours, ref, atol=2e-4, rtol=0)


def _point_hub_to(monkeypatch, folder):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(folder))


def test_missing_weights_error_says_how_to_provide_them(tmp_path, monkeypatch):
    _point_hub_to(monkeypatch, tmp_path / "hub")
    with pytest.raises(WeightsUnavailableError) as err:
        inc.resolve_inception_weights(None)
    msg = str(err.value)
    expected = tmp_path / "hub" / "checkpoints" / inc.WEIGHTS_FILENAME
    assert str(expected) in msg and "--inception-weights" in msg and "never downloads" in msg
    assert "http" not in msg
    with pytest.raises(WeightsUnavailableError, match="not a file"):
        inc.resolve_inception_weights(tmp_path / "nope.pth")
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"x")
    assert inc.resolve_inception_weights(None) == expected


def test_bad_weight_files_are_refused_with_their_name(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pth"):
        inc.load_inception_state_dict(junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(InputError, match="not torch-fidelity's Inception-v3 weights"):
        inc.load_inception_state_dict(wrong)


def test_feature_cache_hit_skips_the_network(inception_material, tmp_path):
    images = canonical(inception_material.synth_u8[:2])
    ext = inc.InceptionFeatureExtractor(inception_material.weights)
    f1, hit1 = ext.features(images, cache_dir=tmp_path)
    assert not hit1 and ext.n_forward_images == 2
    ext2 = inc.InceptionFeatureExtractor(inception_material.weights)  # a later evaluation
    f2, hit2 = ext2.features(images, cache_dir=tmp_path)
    assert hit2 and ext2.n_forward_images == 0
    np.testing.assert_array_equal(f1.pool3, f2.pool3)
    np.testing.assert_array_equal(f1.logits, f2.logits)
    # different pixels -> different key
    _, hit3 = ext2.features(images[:1], cache_dir=tmp_path)
    assert not hit3 and ext2.n_forward_images == 1
    # a corrupt entry is recomputed, not trusted
    for p in tmp_path.glob("inception-*.npz"):
        p.write_bytes(b"garbage")
    _, hit4 = ext2.features(images, cache_dir=tmp_path)
    assert not hit4 and ext2.n_forward_images == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_key_depends_on_weights_and_content(inception_material, tmp_path):
    other = tmp_path / "other.pth"
    torch.save(inc.random_inception_state_dict(seed=1), other)
    a = inc.InceptionFeatureExtractor(inception_material.weights)
    b = inc.InceptionFeatureExtractor(other)
    assert a.cache_key("x" * 64) != b.cache_key("x" * 64)
    assert a.cache_key("x" * 64) != a.cache_key("y" * 64)
    assert a.weights_sha256 != b.weights_sha256
