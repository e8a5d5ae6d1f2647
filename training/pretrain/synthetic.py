"""In-memory random uint8 images of a recipe's shape, for ``python -m training check-recipe`` only.

These images carry no information: a run on them proves that a recipe builds, steps, checkpoints, resumes and
exports at its real input shape, never anything about accuracy. Nothing trained on them is kept or shipped.
"""

from __future__ import annotations

from typing import List, Sequence

import torch

from training.pretrain.data import ImageDataModule, InMemoryImages
from zoo.errors import ZooError

SYNTHETIC_NOTE = "synthetic random uint8 images (check-recipe): not a training result, never ship these weights"


class SyntheticImages(ImageDataModule):
    """Random uint8 images of ``shape`` (C, H, W) with random labels, drawn from ``seed``.

    Args:
        shape: the (channels, height, width) the replaced datamodule yields.
        pretrain_batches: batches of ``batch_size`` in the pre-training split (one epoch).
        labelled: images in each labelled split (kNN bank and test), for the online-evaluation callbacks.
        num_classes: label range of the labelled splits.
    """

    def __init__(self, shape: Sequence[int] = (1, 28, 28), pretrain_batches: int = 3, labelled: int = 4,
                 num_classes: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shape: List[int] = [int(s) for s in shape]
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ZooError(f"synthetic images need a (C, H, W) shape, got {list(shape)}")
        self.pretrain_batches, self.labelled, self.num_classes = int(pretrain_batches), int(labelled), num_classes
        c, h, w = self.shape
        self.image_shape = (c, h, w)  # what the base class declares (fixed per instance, as ImageFolder's)

    def load_split(self, split: str) -> InMemoryImages:
        n = self.pretrain_batches * self.batch_size if split == "pretrain" else self.labelled
        salt = {"pretrain": 0, "train": 1, "test": 2}[split]
        gen = torch.Generator().manual_seed(self.seed * 3 + salt)
        images = torch.randint(0, 256, (n, *self.shape), dtype=torch.uint8, generator=gen)
        return InMemoryImages(images, torch.randint(0, self.num_classes, (n,), generator=gen))
