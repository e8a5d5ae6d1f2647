"""The labelled datasets an evaluation runs on: a named one (Fashion-MNIST, CIFAR-10, STL-10) or a folder of
class folders, with images loaded at the encoder's input size."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from zoo.errors import ZooError

DATASETS = ("fashion_mnist", "cifar10", "stl10")


def folder_datamodule(root: str, load_size: int, seed: int = 0, test_fraction: float = 0.2,
                      skip_unreadable: bool = False):
    """An ImageFolder dataset: ``root/train`` + ``root/test`` (or ``root/val``), or one folder of class folders
    split by a seeded permutation into train and test (``test_fraction``). An image that cannot be decoded stops
    the evaluation with one line naming it, or with ``skip_unreadable`` is left out and counted (``dm.unreadable``)."""
    from training.pretrain.data import ImageFolderDataModule, SplitFolderDataModule, UnreadableFiles

    path = Path(root).expanduser()
    if not path.is_dir():
        raise ZooError(f"{root} is not a dataset name ({', '.join(DATASETS)}) nor an image folder")
    if (path / "train").is_dir():
        test_dir = next((d for d in ("test", "val") if (path / d).is_dir()), None)
        if test_dir is None:
            raise ZooError(f"{path}/train exists but there is no {path}/test or {path}/val to test on")
        dm = ImageFolderDataModule(root=str(path), load_size=load_size, test_dir=test_dir, seed=seed)
    else:
        dm = SplitFolderDataModule(root=str(path), load_size=load_size, test_fraction=test_fraction, seed=seed)
    dm.unreadable = UnreadableFiles(skip_unreadable, "--skip-unreadable true")  # this command's option
    return dm


def datamodule_for(data: str, root: Optional[str], download: bool, encoder, seed: int = 0,
                   skip_unreadable: bool = False):
    from training.pretrain import data as datamodules

    named = {"fashion_mnist": datamodules.FashionMNISTDataModule, "cifar10": datamodules.CIFAR10DataModule,
             "stl10": datamodules.STL10DataModule}
    if data in named:
        return named[data](root=root, download=download, seed=seed)
    return folder_datamodule(data, load_size=max(encoder.zoo_config["input"]["size"]), seed=seed,
                             skip_unreadable=skip_unreadable)
