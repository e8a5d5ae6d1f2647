"""A recipe's module built the way ``python -m training fit`` builds it, and the facts a plan needs from its YAML.

The module comes from the recipe through ``training.cli.lightning_cli`` with ``check-recipe``'s CLI
(:class:`training.plan.check_recipe.CheckCLI`: the recipe's classes, one CPU process, no online evaluation), without
running anything; the datamodule is built but never set up, so no dataset is read.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, TypedDict

from training.pretrain.fit_cli import ZooCLI
from training.pretrain.synthetic import SyntheticImages
from zoo.errors import ZooError, first_line

#: trainer settings replaced for the check: one CPU process, no model summary table
OVERRIDES = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "enable_model_summary": False}
#: callbacks that only measure (accuracy, label-free figures): dropped from the recipe's callbacks for the check
ONLINE_EVAL = ("training.downstream.online.OnlineKNN", "training.downstream.online.OnlineLinear",
               "training.downstream.online_spectrum.OnlineSpectrum")


class CallbackConfig(TypedDict):
    """A callback as a recipe lists it (``trainer.callbacks``): its class and that class's arguments."""

    class_path: str
    init_args: Dict[str, Any]


class SyntheticSettings(TypedDict):
    """``SyntheticImages``' arguments for a check, written into the run's config.yaml as its data."""

    shape: List[int]
    pretrain_batches: int
    batch_size: int
    seed: int


#: the one checkpoint callback of the check: last.ckpt at the end of the first run (the recipes' per-epoch and
#: per-step callbacks would write the same multi-GB file up to three times a run)
CHECKPOINT: CallbackConfig = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                               "init_args": {"save_top_k": 0, "save_last": True, "enable_version_counter": False}}


def smallest_batch(module: Any, largest: int = 4096) -> int:
    """The smallest batch of at least 2 (batch norm needs two samples) that the method's extraction accepts,
    e.g. a divisor of a queue's length."""
    return accepted_batch(module, 2, largest)


def accepted_batch(module: Any, start: int, largest: int = 4096) -> int:
    """The smallest batch from ``start`` up that the method's extraction accepts."""
    for batch in range(start, max(start, largest) + 1):
        try:
            module.extract.check_batch_size(batch)
        except ZooError:
            continue
        return batch
    raise ZooError(f"no batch of {start} to {largest} images is accepted by the extraction "
                   f"{type(module.extract).__name__}")


class CheckCLI(ZooCLI):
    """``ZooCLI`` whose datamodule is replaced, once the recipe's classes are built, by synthetic images of the
    shape the recipe's datamodule yields, in the smallest batch the method accepts."""

    def __init__(self, *args: Any, pretrain_batches: int, first: bool = True, **kwargs: Any) -> None:
        self.pretrain_batches = pretrain_batches
        self.first = first  # the resumed run writes no last.ckpt
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> Dict[str, set]:
        """Only ``fit``: the parsers of validate, test and predict would be built for nothing."""
        return {"fit": ZooCLI.subcommands()["fit"]}

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        trainer = (self.config[self.subcommand] if self.subcommand else self.config).trainer
        from jsonargparse import Namespace

        kept = [c for c in trainer.callbacks or [] if not str(getattr(c, "class_path", "")).endswith(
            ".ModelCheckpoint") and getattr(c, "class_path", None) not in ONLINE_EVAL]
        # the resumed run's checkpoint is written by check_recipe, without the optimizer moments: its callback (the
        # first run's, whose state the checkpoint holds) saves nothing
        init = {**CHECKPOINT["init_args"], "save_last": self.first}
        trainer.callbacks = kept + [Namespace(class_path=CHECKPOINT["class_path"], init_args=Namespace(**init))]

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        real = self.datamodule
        shape = getattr(real, "image_shape", None)
        if shape is None:
            raise ZooError(f"the datamodule {type(real).__name__} does not declare its image_shape (C, H, W), so "
                           "check-recipe cannot stand in for it")
        init: SyntheticSettings = {"shape": list(shape), "pretrain_batches": self.pretrain_batches,
                                   "batch_size": smallest_batch(self.model), "seed": int(getattr(real, "seed", 0))}
        self.datamodule = SyntheticImages(**init)
        self.real_datamodule = type(real).__name__
        # the saved config.yaml (and the export's recipe record) then says the data was synthetic
        config = self.config[self.subcommand] if self.subcommand else self.config
        config.data = type(config.data)(class_path=f"{SyntheticImages.__module__}.SyntheticImages",
                                        init_args=type(config.data)(**init))


def read_recipe(path: Path) -> None:
    """One clear line for a path that is not a recipe (before Lightning's parser prints its usage)."""
    import yaml

    if not path.is_file():
        raise ZooError(f"recipe {path} does not exist")
    try:
        text = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ZooError(f"{path} is not a recipe: not YAML ({first_line(err)})") from None
    if not isinstance(text, dict) or not isinstance(text.get("model"), dict) or "data" not in text:
        raise ZooError(f"{path} is not a recipe: a recipe is a YAML mapping with model, data and trainer sections")


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

    read_recipe(Path(path))
    raw = yaml.safe_load(Path(path).read_text())
    trainer = raw.get("trainer") or {}
    data = raw.get("data") or {}
    init = data.get("init_args") or {}
    args = ["--config", path] + [f"--trainer.{k}={v}" for k, v in OVERRIDES.items()]
    import torch

    from training.pretrain.command_line import lightning_cli

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
