"""Shared test set-up: every cache genbench keeps goes to a temporary root, never the user's."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache_root(tmp_path_factory):
    old = os.environ.get("GENBENCH_CACHE")
    os.environ["GENBENCH_CACHE"] = str(tmp_path_factory.mktemp("genbench_cache"))
    yield
    if old is None:
        os.environ.pop("GENBENCH_CACHE", None)
    else:
        os.environ["GENBENCH_CACHE"] = old


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: more threads only spin. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
