"""What the online-evaluation callbacks (``training.downstream.online``) read from Lightning, typed and checked.

Lightning hands a callback any ``Trainer`` and ``LightningModule``; the callbacks need two things neither class
declares: the datamodule given to ``fit`` (Lightning sets ``trainer.datamodule`` at run time, so the type checker
does not know it) and the module's ``encode_for_eval`` (``ContrastiveModule`` has it; a ``LightningModule`` need
not). Each is read here once, with one line saying what is missing instead of an ``AttributeError`` mid-epoch.
"""

from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
from torch import Tensor

from zoo.errors import ZooError


def fit_datamodule(trainer: pl.Trainer, who: str) -> Any:
    """The datamodule of the running ``fit`` (duck-typed: ``knn_bank_dataloader`` and ``test_dataloader``)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        raise ZooError(f"{who} needs the run's data as a datamodule (trainer.fit(model, datamodule=...)), "
                       "not as bare dataloaders")
    return datamodule


def eval_encoding(pl_module: pl.LightningModule, who: str) -> Callable[[Tensor], Tensor]:
    """The module's ``encode_for_eval`` (images -> downstream features)."""
    encode = getattr(pl_module, "encode_for_eval", None)
    if not callable(encode):
        raise ZooError(f"{who} needs a module with encode_for_eval (as ContrastiveModule has); "
                       f"{type(pl_module).__name__} has none")
    return encode
