"""The frozen evaluation of a cell: kNN and linear probe (``frozen_evaluation``) on optional fixed subsets.

On Fashion-MNIST the full evaluation encodes 70k images and fits the probe on 54k feature vectors; a grid of many
cells can evaluate on a fixed subset instead: ``bank`` labelled training images (the kNN bank and the probe's
fit+val split) and ``test`` test images, both drawn once with ``seed`` and therefore the same for every cell.
The sizes are written into every result. ``python -m training evaluate`` measures one cell's export on the
whole splits.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Dict, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Subset

import zoo
from training.downstream.frozen import frozen_evaluation, frozen_features
from training.pretrain.batches import dataset_size
from training.pretrain.data import InMemoryImages, batch_as_is
from zoo.errors import ZooError

#: datamodule arguments that concern pre-training only; the evaluation's datamodule does not take them over
TRAINING_ONLY = ("batch_size", "train_subset", "knn_bank_subset", "seed", "num_workers")


def subset(data: Dataset, n: Optional[int], seed: int) -> Dataset:
    """The first ``n`` items of a seeded permutation (the same rule as ``ImageDataModule.split``), or all."""
    if n is None or n >= dataset_size(data):
        return data
    keep = torch.randperm(dataset_size(data), generator=torch.Generator().manual_seed(seed))[:n]
    if isinstance(data, InMemoryImages):
        return InMemoryImages(data.images[keep], data.labels[keep])
    return Subset(data, keep.tolist())


def loader(data: Dataset, batch_size: int = 1024) -> DataLoader:
    if isinstance(data, InMemoryImages):
        return DataLoader(data, batch_size=batch_size, collate_fn=batch_as_is)
    return DataLoader(data, batch_size=batch_size)


class EvaluationSplits:
    """The labelled bank and the test split of a datamodule, each optionally a fixed seeded subset; what
    ``frozen_evaluation`` reads (``knn_bank_dataloader`` and ``test_dataloader``)."""

    def __init__(self, datamodule, bank: Optional[int], test: Optional[int], seed: int) -> None:
        self.bank = subset(datamodule.split("train"), bank, seed)
        self.test = subset(datamodule.split("test"), test, seed)

    def knn_bank_dataloader(self) -> DataLoader:
        return loader(self.bank)

    def test_dataloader(self) -> DataLoader:
        return loader(self.test)


def datamodule(data: Dict[str, Any], fit: Dict[str, Any]):
    """The recipe's datamodule with the grid's ``data.init_args.*`` fit options, for evaluation."""
    path = str(data.get("class_path", ""))
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    args = dict(data.get("init_args") or {})
    args.update({k[len("data.init_args."):]: v for k, v in fit.items() if k.startswith("data.init_args.")})
    return cls(**{k: v for k, v in args.items() if k not in TRAINING_ONLY})


def evaluate_export(folder: str, data: Dict[str, Any], fit: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """kNN and linear-probe top-1 of an exported encoder on the (subset) evaluation splits."""
    start = time.perf_counter()
    encoder = zoo.load_encoder(folder)
    splits = EvaluationSplits(datamodule(data, fit), settings["bank"], settings["test"], settings["seed"])
    n_bank, n_test = dataset_size(splits.bank), dataset_size(splits.test)
    if n_bank < 2 or n_test < 1:
        raise ZooError(f"the evaluation splits are too small ({n_bank} bank, {n_test} test)")
    scores = frozen_evaluation(frozen_features(encoder, zoo.eval_transform(encoder)), splits, ("knn", "linear"),
                               seed=settings["seed"])
    ran = encoder.zoo_config["training"].get("settings") or {}  # what the fit resolved (training.pretrain.hardware)
    return {"precision": ran.get("precision"), "channels_last": ran.get("channels_last"),
            "knn": scores["knn"]["top1"], "linear": scores["linear"]["top1"], "knn_val": scores["knn"]["val_top1"],
            "linear_val": scores["linear"]["val_top1"], "linear_weight_decay": scores["linear"]["weight_decay"],
            "dims": scores["dims"], "n_bank": n_bank, "n_fit": scores["n_fit"], "n_val": scores["n_val"],
            "n_test": scores["n_test"], "global_step": encoder.zoo_config["training"].get("global_step"),
            "eval_seconds": round(time.perf_counter() - start, 2)}
