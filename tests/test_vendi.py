"""The Vendi score equals the vendi-score package's value for both kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.metrics import vendi as V

vendi_score = pytest.importorskip("vendi_score")


def _images(n=12, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    x[n // 2:] = x[: n - n // 2] * 0.9  # near-duplicates: fewer effective images than n
    return x


@pytest.mark.parametrize("size", [40, 32, 17])
def test_pixel_kernel_equals_pixel_vendi_score(size):
    from PIL import Image
    from vendi_score import image_utils

    from genbench.imageset import quantize_uint8

    x = _images(size=size)
    pil = [Image.fromarray(a, mode="L") for a in quantize_uint8(x)[:, 0].numpy()]
    assert V.set_vendi(x, "pixel").value == pytest.approx(image_utils.pixel_vendi_score(pil), rel=1e-10)


def test_ssim_kernel_equals_vendi_score_with_scikit_image_ssim():
    from skimage.metrics import structural_similarity
    from vendi_score import vendi

    x = _images(n=8, size=24)

    def k(a, b):
        return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=2.0)

    want = vendi.score([a for a in x[:, 0].double().numpy()], k)
    assert V.set_vendi(x, "ssim").value == pytest.approx(want, rel=1e-6)


def test_range_and_behaviour():
    x = _images()
    # n identical images: one effective image. Mutually orthogonal kernel: n.
    assert V.vendi_from_kernel(np.ones((5, 5))) == pytest.approx(1.0)
    assert V.vendi_from_kernel(np.eye(7)) == pytest.approx(7.0)
    assert V.set_vendi(x[:1].repeat(6, 1, 1, 1), "ssim").value == pytest.approx(1.0, abs=1e-6)
    # Near-duplicates lower the score compared with distinct images.
    distinct = torch.rand(12, 1, 40, 40, generator=torch.Generator().manual_seed(9)) * 2 - 1
    assert V.set_vendi(distinct, "ssim").value > V.set_vendi(x, "ssim").value + 3


def test_bootstrap_replicates_are_the_score_of_the_resampled_set():
    from genbench.stats import SYNTH, Bootstrap

    x = _images(n=10, size=24)
    res = V.set_vendi(x, "pixel")
    boot = Bootstrap(replicates=3, seed=2)
    reps = res.replicates(boot, SYNTH)
    for r in range(3):
        idx = boot.indices(10, SYNTH, r, r + 1)[0]
        assert reps[r] == pytest.approx(V.set_vendi(x[torch.from_numpy(idx)], "pixel").value, rel=1e-9)


def test_bad_kernel_and_too_few_images():
    from genbench.errors import UsageError

    with pytest.raises(UsageError, match="--vendi-kernel"):
        V.check_kernel("rbf")
    with pytest.raises(V.VendiInputError):
        V.set_vendi(_images()[:1])
