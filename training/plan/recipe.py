"""A recipe's module built the way ``python -m training fit`` builds it, and the facts a plan needs from its YAML.

The module comes from the recipe through ``training.cli.lightning_cli`` with ``check-recipe``'s CLI
(:class:`training.check_recipe.CheckCLI`: the recipe's classes, one CPU process, no online evaluation), without
running anything; the datamodule is built but never set up, so no dataset is read.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from training.check_recipe import OVERRIDES, CheckCLI, _read_recipe
from zoo.errors import ZooError

#: images in the pre-training split of each datamodule (what one epoch reads)
DATASET_IMAGES: Dict[str, tuple] = {
    "FashionMNISTDataModule": (60_000, "Fashion-MNIST train split"),
    "CIFAR10DataModule": (50_000, "CIFAR-10 train split"),
    "STL10DataModule": (105_000, "STL-10 train+unlabeled (training.pretrain.data.STL10DataModule)"),
    "ImageFolderDataModule": (1_281_167, "ImageNet-1k train split (ILSVRC-2012)"),
}


class PlanCLI(CheckCLI):
    """``CheckCLI`` that keeps the recipe's own datamodule (for its batch and image shape): a plan never trains,
    and moves the module to the meta device before any step."""

    def instantiate_classes(self) -> None:
        super(CheckCLI, self).instantiate_classes()


@dataclass
class Recipe:
    path: str
    module: Any
    datamodule: str
    image_shape: tuple
    batch_per_gpu: int
    gpus: int
    epochs: int
    dataset_images: int
    dataset_note: str
    decode: str = "cpu"  # ImageFolderDataModule: JPEGs decoded in the loader's workers (cpu) or on the GPU (device)

    @property
    def global_batch(self) -> int:
        return self.batch_per_gpu * self.gpus


def _int(value: Any, what: str, path: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ZooError(f"recipe {path}: {what} must be a number for a plan, got {value!r}") from None


def load_recipe(path: str, dataset_images: Optional[int] = None, device: str = "meta") -> Recipe:
    """Build ``path``'s module on ``device`` (``meta`` for counting, ``cpu`` for measuring memory) and read its
    trainer and data settings."""
    import yaml

    _read_recipe(Path(path))
    raw = yaml.safe_load(Path(path).read_text())
    trainer = raw.get("trainer") or {}
    data = raw.get("data") or {}
    init = data.get("init_args") or {}
    args = ["--config", path] + [f"--trainer.{k}={v}" for k, v in OVERRIDES.items()]
    import torch

    from training.cli import lightning_cli

    # on the meta device the module's parameters are shapes only: a 666 M-parameter encoder builds in seconds
    with contextlib.redirect_stdout(sys.stderr), torch.device(device):
        cli = lightning_cli(args, run=False, cli_class=functools.partial(PlanCLI, pretrain_batches=1))
    dm = cli.datamodule
    shape = getattr(dm, "image_shape", None)
    if shape is None:
        raise ZooError(f"recipe {path}: the datamodule {type(dm).__name__} does not declare its image_shape")
    name = type(dm).__name__
    images, note = DATASET_IMAGES.get(name, (None, ""))
    if init.get("train_subset"):
        images, note = int(init["train_subset"]), f"train_subset of the recipe ({note})"
    if dataset_images is not None:
        images, note = dataset_images, "given with --dataset-images"
    if images is None:
        raise ZooError(f"recipe {path}: no known size for {name}'s training split; pass --dataset-images N")
    devices = _int(trainer.get("devices", 1), "trainer.devices", path)
    nodes = _int(trainer.get("num_nodes", 1), "trainer.num_nodes", path)
    return Recipe(path=path, module=cli.model, datamodule=name, image_shape=tuple(shape),
                  batch_per_gpu=int(dm.batch_size), gpus=devices * nodes,
                  epochs=_int(trainer.get("max_epochs", 1), "trainer.max_epochs", path),
                  dataset_images=int(images), dataset_note=note, decode=str(getattr(dm, "decode", "cpu")))
