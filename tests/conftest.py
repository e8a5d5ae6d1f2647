"""Shared fixtures: tiny method configurations and a tiny Fashion-MNIST-format dataset on disk."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

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


# Per-row overrides that shrink every method to something that steps in well under a second on a CPU.
TINY = {
    "simclr": dict(augment=dict(size=16, mean=[0.5], std=[0.25], blur_prob=0.5),
                   encoder=dict(arch="resnet18", in_channels=1, small_image_stem=True),
                   extract=dict(head_hidden=32, head_out=16)),
    "amdim": dict(augment=dict(size=32, mean=[0.5], std=[0.25]),
                  encoder=dict(in_channels=1, image_size=32, ndf=8, n_rkhs=32, depth=1)),
    "cpc_v2": dict(augment=dict(size=16, patch=8, overlap=4, mean=[0.5], std=[0.25], patch_colour="jitter"),
                   encoder=dict(arch="resnet50", layers=[1, 1, 1, 1], width_per_group=16, patch_size=8,
                                in_channels=1),
                   extract=dict(context_dim=32, target_dim=16, steps=2, n_context_layers=1)),
    "swav": dict(augment=dict(size=16, small_size=8, n_small=2, mean=[0.5], std=[0.25]),
                 encoder=dict(arch="resnet18", in_channels=1, small_image_stem=True),
                 extract=dict(head_hidden=32, head_out=16, n_prototypes=10, freeze_prototypes_epochs=0)),
    "moco_v2": dict(augment=dict(size=16, mean=[0.5], std=[0.25]),
                    encoder=dict(arch="resnet18", in_channels=1, small_image_stem=True),
                    extract=dict(head_hidden=32, head_out=16, queue_size=64)),
    "byol": dict(augment=dict(size=16, mean=[0.5], std=[0.25]),
                 encoder=dict(arch="resnet18", in_channels=1, small_image_stem=True),
                 extract=dict(projector_hidden=32, projector_out=16, predictor_hidden=32)),
    "yadim": dict(augment=dict(size=32, mean=[0.5], std=[0.25]),
                  encoder=dict(in_channels=1, image_size=32, ndf=8, n_rkhs=32, depth=1)),
}


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fashion_mnist(folder: Path, n_train: int = 96, n_test: int = 40, seed: int = 0) -> Path:
    """Random 28x28 images whose class shifts the mean brightness, in the IDX layout Fashion-MNIST uses."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 4, size=n)
        images = rng.integers(0, 120, size=(n, 28, 28)) + labels[:, None, None] * 40
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


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


def randomise_batch_norm(net):
    """Random batch-norm affine parameters and running statistics (so eval mode matters); returns ``net.eval()``."""
    import torch
    from torch import nn

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
    return net.eval()
