"""The one generic LightningModule: views -> encoder -> extraction -> similarity -> loss, for any method row.

There is no per-method subclass. A method is named by its row (``method: yadim``) and/or given part by part
(``augment: {...}`` etc.); each characteristic's mapping overrides the row's part arguments, or replaces the
part when it names another one, so a new combination trains from YAML alone.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Union

import pytorch_lightning as pl
import torch
from torch import Tensor

from training.pretrain.hardware import resolve_channels_last
from zoo.build import build_method
from zoo.errors import ZooError
from zoo.methods import resolve_method
from zoo.values import NON_NEGATIVE, POSITIVE, Allowed, check_values, is_number

_OPTIMIZERS = ("adam", "adamw", "sgd", "lars")
_SCHEDULES = ("cosine", "constant")
#: what the module's numeric settings may be; checked here and, as ``model.KEY``, where ``fit`` reads the recipe
VALUES = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE, "warmup_epochs": NON_NEGATIVE,
          "momentum": Allowed(lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")}


class ContrastiveModule(pl.LightningModule):
    def __init__(self, method: Optional[str] = None, name: Optional[str] = None,
                 augment: Optional[Dict[str, Any]] = None, encoder: Optional[Dict[str, Any]] = None,
                 extract: Optional[Dict[str, Any]] = None, similarity: Optional[Dict[str, Any]] = None,
                 loss: Optional[Dict[str, Any]] = None, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, momentum: float = 0.9, warmup_epochs: float = 0.0,
                 schedule: str = "cosine", channels_last: Union[bool, str] = "auto") -> None:
        """
        Args:
            method: a registered method row (``zoo.list_methods()``), or None to define one from the five parts.
            name: the name of the resulting method (defaults to the row's name).
            augment: (1) augmentation part overrides, e.g. ``{size: 32, mean: [0.5], std: [0.5]}``.
            encoder: (2) encoder part overrides, e.g. ``{ndf: 32, in_channels: 1}``.
            extract: (3) representation extraction part overrides.
            similarity: (4) similarity part overrides.
            loss: (5) loss part overrides.
            optimizer: one of adam, adamw, sgd, lars (timm's LARS: SimCLR, BYOL and SwAV at large batch).
            lr: peak learning rate.
            weight_decay: weight decay.
            momentum: SGD momentum.
            warmup_epochs: linear warm-up length in epochs (may be fractional).
            schedule: 'cosine' (decay to 0 over training after warm-up) or 'constant'.
            channels_last: run the encoder in channels-last memory format; ``auto`` chooses from the hardware
                (``training.pretrain.hardware.resolve_channels_last``).
        """
        super().__init__()
        if optimizer not in _OPTIMIZERS:
            raise ZooError(f"unknown optimizer {optimizer!r}; use one of {list(_OPTIMIZERS)}")
        if schedule not in _SCHEDULES:
            raise ZooError(f"unknown schedule {schedule!r}; use one of {list(_SCHEDULES)}")
        check_values({"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "warmup_epochs": warmup_epochs},
                     VALUES.get)
        self.save_hyperparameters()
        # subscripted, not hparams.channels_last: Lightning types hparams as a MutableMapping (it is an AttributeDict)
        self.hparams["channels_last"] = resolve_channels_last(channels_last)[0]
        self.method = resolve_method(method, name=name, augment=augment, encoder=encoder, extract=extract,
                                     similarity=similarity, loss=loss)
        parts = build_method(self.method)
        self.augment = parts.augment
        self.encoder, self.extract, self.similarity, self.loss_fn = (
            parts.encoder, parts.extract, parts.similarity, parts.loss)
        if self.hparams["channels_last"]:
            self.encoder = self.encoder.to(memory_format=torch.channels_last)

    def _views(self, images: Tensor):
        views = self.augment(images)
        if self.hparams["channels_last"]:
            views = [v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for v in views]
        return views

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, _ = batch
        loss = self.loss_of_views(self._views(images))
        self.log("loss", loss, prog_bar=True)
        self._loss = loss.detach()
        return loss

    def loss_of_views(self, views) -> Tensor:
        """The training loss of a batch's views: extraction, similarity and loss (``python -m training plan``
        counts this step's FLOPs on views of the recipe's shape)."""
        comparisons = self.extract(self.encoder, views)
        return sum(c.weight * self.loss_fn(self.similarity(c.anchors, c.candidates), c) for c in comparisons)

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:  # e.g. a queue that must hold whole global batches
            self.extract.check_batch_size(int(datamodule.batch_size) * int(self.trainer.world_size))

    def on_before_optimizer_step(self, optimizer) -> None:
        # checked before the weights change and before any checkpoint of this step is written, so a NaN/inf loss
        # leaves the weights and the last checkpoint as they were
        loss = getattr(self, "_loss", None)
        if loss is not None and not torch.isfinite(loss):
            raise ZooError(f"loss became {loss.item()} at step {self.global_step}; stopping before the optimizer "
                           "step (weights and last checkpoint unchanged)")
        # e.g. SwAV keeps its prototypes frozen during the first epoch
        self.extract.before_optimizer_step(self.current_epoch)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # momentum teachers: EMA update with the training progress k/K in [0, 1), once per optimizer step (also
        # under gradient accumulation), and before the step's checkpoint is written, which a resumed run relies on.
        # k counts the updates from 0, as in BYOL's code (the k-th update uses its tau at k/K): global_step is still
        # this step's index here, Lightning counts the step only after this hook returns
        total = max(1, int(self.trainer.estimated_stepping_batches))
        self.extract.after_optimizer_step(self.encoder, min(1.0, self.global_step / total))

    def encode_for_eval(self, images: Tensor) -> Tensor:
        """The downstream representation: eval preprocessing, then the encoder's pooled last map."""
        x = self.augment.eval_transform(images)
        if self.hparams["channels_last"] and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.encoder(x)

    def configure_optimizers(self):
        hp = self.hparams
        trainable = [p for p in self.parameters() if p.requires_grad]
        # biases and normalisation parameters get no weight decay (and, under LARS, no trust-ratio adaptation),
        # as in SimCLR and BYOL
        params = [{"params": [p for p in trainable if p.ndim > 1]},
                  {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}]
        if hp.optimizer == "sgd":
            # not fused: torch's fused SGD fails when a parameter gets its first gradient after the others (SwAV's
            # prototypes, frozen for the first epoch, do)
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        elif hp.optimizer == "lars":
            from timm.optim import Lars

            opt = Lars(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        else:
            cls = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
            # fused kernels (one pass over all parameters): the per-parameter update, up to float rounding
            fused = {"fused": True} if _fusable(trainable) else {}
            opt = cls(params, lr=hp.lr, weight_decay=hp.weight_decay, **fused)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = total / max(1, self.trainer.max_epochs or 1)
        warmup = int(hp.warmup_epochs * per_epoch)
        cosine = hp.schedule == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _fusable(params) -> bool:
    """Fused optimizer kernels exist for floating-point parameters on CPU and CUDA."""
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
