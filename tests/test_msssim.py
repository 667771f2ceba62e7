"""MS-SSIM diversity: equal to pytorch-msssim (5 scales, and its reduced-weight form), to MONAI at
the few scales small images allow, to scikit-image's SSIM at one scale; pairs and bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.metrics import msssim as M

pytorch_msssim = pytest.importorskip("pytorch_msssim")


def _pair(shape, seed, mix=0.6):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = x * mix + (1 - mix) * torch.rand(shape, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("shape", [(3, 1, 176, 176), (2, 1, 193, 171)])  # odd sides: padded pooling
def test_five_scales_equal_pytorch_msssim(shape):
    x, y = _pair(shape, 0)
    st = M.settings_for(*shape[-2:])
    assert st.scales == 5 and st.weights == pytest.approx(M.WEIGHTS)
    ours = M.ms_ssim(x, y, st)
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=0, atol=1e-12)


def test_fewer_scales_equal_pytorch_msssim_with_those_weights():
    x, y = _pair((3, 1, 176, 176), 1)
    w = list(M.settings_for(64, 64).weights)
    assert len(w) == 3 and sum(w) == pytest.approx(1.0)
    ours = M.ms_ssim(x, y, M.MSSSIMSettings(weights=tuple(w)))
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False, weights=w)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=0, atol=1e-12)


def test_small_images_equal_monai():
    monai_reg = pytest.importorskip("monai.metrics.regression")
    x, y = _pair((4, 1, 32, 32), 2)
    st = M.settings_for(32, 32)
    assert st.scales == 2
    ours = M.ms_ssim(x, y, st)
    ref = monai_reg.compute_ms_ssim(x, y, spatial_dims=2, data_range=1.0, weights=st.weights).flatten()
    np.testing.assert_allclose(ours.numpy(), ref.double().numpy(), rtol=0, atol=1e-6)


def test_one_scale_is_scikit_image_ssim():
    from skimage.metrics import structural_similarity

    x, y = _pair((2, 1, 20, 24), 3)
    st = M.settings_for(20, 24)
    assert st.scales == 1
    ours = M.ms_ssim(x, y, st)
    for b in range(2):
        ref = structural_similarity(x[b, 0].numpy(), y[b, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0)
        # The taps are pytorch-msssim's float32 Gaussian; scikit-image's are float64 (~1e-7 apart).
        assert float(ours[b]) == pytest.approx(ref, abs=1e-6)


def test_too_small_is_a_clear_error():
    with pytest.raises(M.MSSSIMInputError, match="larger than 10 px"):
        M.settings_for(10, 64)


def test_pairs_are_distinct_unordered_and_seeded():
    i, j = M.pair_indices(7, 100, 0)
    assert len(i) == 21 and set(zip(i.tolist(), j.tolist())) == {(a, b) for a in range(7) for b in range(a + 1, 7)}
    i, j = M.pair_indices(300, 500, 4)
    assert len(set(zip(i.tolist(), j.tolist()))) == 500 and (i < j).all() and j.max() < 300
    i2, j2 = M.pair_indices(300, 500, 4)
    assert (i == i2).all() and (j == j2).all()


def test_set_value_is_the_mean_over_pairs_in_canonical_range():
    g = torch.Generator().manual_seed(5)
    imgs = torch.rand(6, 1, 48, 48, generator=g) * 2 - 1
    res = M.set_msssim(imgs, pairs=1000)
    x01 = (imgs.double() + 1) / 2
    want = np.mean([float(M.ms_ssim(x01[a:a + 1], x01[b:b + 1])[0]) for a in range(6) for b in range(a + 1, 6)])
    assert res.value == pytest.approx(want, rel=1e-12)
    # A collapsed set (one image repeated) is maximally similar.
    same = M.set_msssim(imgs[:1].repeat(5, 1, 1, 1))
    assert same.value == pytest.approx(1.0, abs=1e-12)
    assert same.value > res.value


def test_bootstrap_replicates_reweight_pairs():
    from genbench.stats import REAL, Bootstrap

    g = torch.Generator().manual_seed(6)
    imgs = torch.rand(8, 1, 24, 24, generator=g) * 2 - 1
    res = M.set_msssim(imgs)
    boot = Bootstrap(replicates=5, seed=1)
    reps = res.replicates(boot, REAL)
    for r in range(5):
        idx = boot.indices(8, REAL, r, r + 1)[0]
        # Brute force: every pair of distinct positions in the resample whose images differ
        # (all pairs are listed here), each image pair counted c_i * c_j times.
        vals = []
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = sorted((idx[a], idx[b]))
                if i != j:
                    vals.append(res.values[(res.i == i) & (res.j == j)][0])
        assert reps[r] == pytest.approx(np.mean(vals), rel=1e-12)
