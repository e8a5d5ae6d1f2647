"""Lightning callbacks that report downstream quality during pre-training without touching method code."""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch

from training.downstream.callback_inputs import eval_encoding, fit_datamodule, split_features
from training.downstream.frozen import knn_accuracy


class OnlineKNN(pl.Callback):
    """Test-set kNN accuracy (k, cosine, exp(sim / temperature) votes) of the encoder after every
    ``every_n_epochs`` epochs, logged as ``knn_acc``. Needs a datamodule with ``knn_bank_dataloader`` and
    ``test_dataloader`` and a module with ``encode_for_eval``."""

    def __init__(self, k: int = 200, temperature: float = 0.1, every_n_epochs: int = 1) -> None:
        self.k, self.temperature, self.every_n_epochs = k, temperature, every_n_epochs
        self.history: list = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or trainer.sanity_checking:
            return
        bank = split_features(trainer, pl_module, "bank", "OnlineKNN")
        test = split_features(trainer, pl_module, "test", "OnlineKNN")  # last: OnlineSpectrum reuses it
        acc = knn_accuracy(bank, test, self.k, self.temperature)
        self.history.append((trainer.current_epoch + 1, acc))
        pl_module.log("knn_acc", acc, prog_bar=True, sync_dist=True)


class OnlineLinear(pl.Callback):
    """A linear classifier trained alongside pre-training on detached features of each training batch (its own
    Adam optimizer; no gradient reaches the encoder), scored on the test split every ``every_n_epochs`` epochs and
    logged as ``linear_acc``. The features are taken in eval mode from the un-augmented batch, so the method's
    own forward pass and batch-norm statistics are untouched."""

    def __init__(self, num_classes: int = 10, lr: float = 1e-3, every_n_epochs: int = 1) -> None:
        self.num_classes, self.lr, self.every_n_epochs = num_classes, lr, every_n_epochs
        self.head: Optional[torch.nn.Linear] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.history: list = []

    def _features(self, pl_module: pl.LightningModule, images: torch.Tensor) -> torch.Tensor:
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            feats = eval_encoding(pl_module, "OnlineLinear")(images).float()
        pl_module.train(was_training)
        return feats

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        images, labels = batch
        feats = self._features(pl_module, images)
        if self.head is None or self.optimizer is None:  # both are set together
            with torch.random.fork_rng(devices=[]):  # the head's init must not shift the method's random draws
                torch.manual_seed(0)
                self.head = torch.nn.Linear(feats.shape[1], self.num_classes).to(feats.device)
            self.optimizer = torch.optim.Adam(self.head.parameters(), lr=self.lr)
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(self.head(feats), labels.to(feats.device).long())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.head is None or (trainer.current_epoch + 1) % self.every_n_epochs or trainer.sanity_checking:
            return
        correct = total = 0
        for images, labels in fit_datamodule(trainer, "OnlineLinear").test_dataloader():
            with torch.no_grad():
                preds = self.head(self._features(pl_module, images.to(pl_module.device))).argmax(1).cpu()
            correct += int((preds == torch.as_tensor(labels)).sum())
            total += len(preds)
        acc = correct / max(total, 1)
        self.history.append((trainer.current_epoch + 1, acc))
        pl_module.log("linear_acc", acc, prog_bar=True, sync_dist=True)

    def state_dict(self) -> dict:
        return {"head": self.head.state_dict() if self.head is not None else None, "history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
        if state_dict.get("head") is not None:
            weight = state_dict["head"]["weight"]
            self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
            self.head.load_state_dict(state_dict["head"])
            self.optimizer = torch.optim.Adam(self.head.parameters(), lr=self.lr)
