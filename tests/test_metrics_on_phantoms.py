"""DS and FDS move the right way on the built-in phantoms of all four modalities.

The held-out real set is scored against a second real sample (the floor) and against sets with
known defects: mode collapse (four images repeated), heavy pixel noise, and a distribution shift
(intensities inverted). Margins leave room for seed noise at this tiny size (32 px, ~50 images)
while staying far from what the floor gives.
"""

from __future__ import annotations

import pytest
import torch

from genbench.data.prepare import prepare_dataset
from genbench.data.presets import PRESETS
from genbench.metrics.ds import compute_ds
from genbench.metrics.fds import compute_fds


def _sets(name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    prepared = prepare_dataset(name, size=32, n=240, use_cache=False)
    train, real = prepared.train.images, prepared.test.images
    n = len(real)
    g = torch.Generator().manual_seed(0)
    # A random draw: the train set is ordered by patient, and its first slices would be a few
    # patients only, an unfair floor.
    pick = torch.randperm(len(train), generator=g)
    floor = train[pick[:n]]
    return real, {
        "floor": floor,
        "collapsed": train[pick[:4]].repeat((n + 3) // 4, 1, 1, 1)[:n],
        "noisy": (floor + 0.5 * torch.randn(floor.shape, generator=g)).clamp(-1.0, 1.0),
        "inverted": -floor,
    }


@pytest.mark.parametrize("name", list(PRESETS))
def test_ds_and_fds_rank_defects_above_the_real_floor(name):
    real, synth = _sets(name)
    ds = {k: compute_ds(real, synth[k]).value for k in ("floor", "collapsed", "noisy")}
    assert compute_ds(real, real).value == 0.0
    assert ds["floor"] < 0.6, ds
    # Collapse piles nearest SSIMs at 1; noise pulls them towards 0: both leave the real histogram.
    assert ds["collapsed"] > ds["floor"] + 0.25, ds
    assert ds["noisy"] > ds["floor"] + 0.25, ds

    fds = {k: compute_fds(real, synth[k], seeds=(0,)).value for k in ("floor", "inverted")}
    assert fds["floor"] < 2.0, fds
    assert fds["inverted"] > 20.0, fds
