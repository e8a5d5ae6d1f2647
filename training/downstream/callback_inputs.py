"""What the online-evaluation callbacks (``training.downstream.online``) read from Lightning, typed and checked.

Lightning hands a callback any ``Trainer`` and ``LightningModule``; the callbacks need two things neither class
declares: the datamodule given to ``fit`` (Lightning sets ``trainer.datamodule`` at run time, so the type checker
does not know it) and the module's ``encode_for_eval`` (``ContrastiveModule`` has it; a ``LightningModule`` need
not). Each is read here once, with one line saying what is missing instead of an ``AttributeError`` mid-epoch.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor

from training.downstream.frozen import extract_features
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


#: per trainer, the last split's features: (global step, epoch, split) -> (features, labels)
_LAST: "weakref.WeakKeyDictionary[pl.Trainer, Tuple[Tuple[int, int, str], Tuple[Tensor, Tensor]]]" = \
    weakref.WeakKeyDictionary()


def split_features(trainer: pl.Trainer, pl_module: pl.LightningModule, split: str, who: str) -> Tuple[Tensor, Tensor]:
    """Features and labels of the fit's ``split`` (``test``, or ``bank``: the kNN bank), encoded in eval mode
    under no_grad with the module's mode restored after. Callbacks that read the same split at the same step
    share one pass (``OnlineKNN`` ends with the test split, which ``OnlineSpectrum`` reads next): the last split
    extracted is kept for its trainer until another is asked for."""
    key = (trainer.global_step, trainer.current_epoch, split)
    kept = _LAST.get(trainer)
    if kept is not None and kept[0] == key:
        return kept[1]
    data, encode = fit_datamodule(trainer, who), eval_encoding(pl_module, who)
    loader = data.knn_bank_dataloader() if split == "bank" else data.test_dataloader()
    was_training = pl_module.training
    pl_module.eval()
    try:
        with torch.no_grad():
            found = extract_features(encode, loader, pl_module.device, what=f"{split} features for {who}")
    finally:
        pl_module.train(was_training)
    _LAST[trainer] = (key, found)
    return found
