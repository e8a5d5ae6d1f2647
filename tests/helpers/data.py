"""Made-up datasets in the exact on-disk layouts of the real ones."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


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
