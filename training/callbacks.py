"""Lightning callbacks that report downstream quality during pre-training without touching method code."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from training.evaluation import extract_features, knn_accuracy


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
        dm = trainer.datamodule
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            bank = extract_features(pl_module.encode_for_eval, dm.knn_bank_dataloader(), pl_module.device)
            test = extract_features(pl_module.encode_for_eval, dm.test_dataloader(), pl_module.device)
        pl_module.train(was_training)
        acc = knn_accuracy(bank, test, self.k, self.temperature)
        self.history.append((trainer.current_epoch + 1, acc))
        pl_module.log("knn_acc", acc, prog_bar=True, sync_dist=True)
