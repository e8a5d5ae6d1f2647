"""``OnlineSpectrum``: RankMe and alpha-ReQ of the encoder's test-split features during pre-training.

The label-free figures of ``training.downstream.spectrum`` beside ``OnlineKNN``'s ``knn_acc``: a collapsing run
shows up as a falling ``rankme`` (fewer directions used) and a rising ``areq`` (a steeper spectrum) without any
labels or probe. The features are the test split's, taken in eval mode under no_grad exactly as ``OnlineKNN``
takes them, so the method's own forward passes, batch-norm statistics and random draws are untouched; with the
whole test split the last epoch's figures are the ones ``python -m training evaluate --protocol rankme|areq``
gives for the exported encoder on that split (up to the training precision).

Cost: one pass over the test split per logged epoch (10k images on Fashion-MNIST, half of what ``OnlineKNN``
extracts; none when ``OnlineKNN`` ran at the same step, whose test features it reuses) plus an SVD and an eigendecomposition of a (N, D) matrix. Measured by ``bench/online_spectrum_cost.py``
on the SimCLR Fashion-MNIST recipe: 10.5 s per epoch, 3% of a 350 s epoch (OnlineKNN: 25 s, 7%); Intel Xeon
family 6 model 207 (avx512_bf16, amx_bf16), 2 cores shared with other jobs.
"""

from __future__ import annotations

import pytorch_lightning as pl

from training.downstream.callback_inputs import split_features
from training.downstream.spectrum import spectrum_figures
from zoo.errors import ZooError


class OnlineSpectrum(pl.Callback):
    """RankMe (``rankme``) and alpha-ReQ (``areq``) of the encoder's test features after every ``every_n_epochs``
    epochs. Needs a datamodule with ``test_dataloader`` (labels are read but unused) and a module with
    ``encode_for_eval``. ``history`` holds ``(epoch, rankme, areq)``; areq is None when the features are too few
    to fit (and then not logged)."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ZooError(f"OnlineSpectrum needs every_n_epochs >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.history: list = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or trainer.sanity_checking:
            return
        features, _ = split_features(trainer, pl_module, "test", "OnlineSpectrum")  # OnlineKNN's, when it ran
        figures = spectrum_figures(features.flatten(1))
        self.history.append((trainer.current_epoch + 1, figures["rankme"], figures["alpha_req"]))
        pl_module.log("rankme", figures["rankme"], sync_dist=True)
        if figures["alpha_req"] is not None:
            pl_module.log("areq", figures["alpha_req"], sync_dist=True)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
