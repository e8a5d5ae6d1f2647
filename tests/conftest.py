"""Shared fixtures (the helpers they use live in ``tests/helpers/``): a seeded torch per test, a tiny
Fashion-MNIST-format dataset on disk, one intra-op thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.data import make_fashion_mnist

# `make test` runs two pytest-xdist workers (TEST_WORKERS): one intra-op thread each, and in the processes tests
# start, so two workers never ask the two cores for four busy threads. Set before any test module imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Every test starts from torch's seed 0: a test that passes here passes in CI, whatever ran before it on its
    xdist worker (an unseeded random initialisation once failed a default-tolerance allclose in CI only)."""
    import torch

    torch.manual_seed(0)


@pytest.fixture
def fmnist_dir(tmp_path: Path) -> Path:
    return make_fashion_mnist(tmp_path / "fmnist")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny forwards: one intra-op thread avoids stalls when the cores are shared with other jobs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
