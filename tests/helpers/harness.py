"""Shared test harness: a few optimizer steps through the real LightningModule and Trainer."""

import pytorch_lightning as pl
import torch

from training.pretrain.data import FashionMNISTDataModule


class GradientProbe(pl.Callback):
    """Records each step's loss and the summed norm of the encoder's gradients before each optimizer step."""

    def __init__(self):
        self.losses, self.grad_norms = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())

    def on_before_optimizer_step(self, trainer, module, optimizer):
        grads = [p.grad.norm() for p in module.encoder.parameters() if p.grad is not None]
        self.grad_norms.append(torch.stack(grads).sum().item() if grads else 0.0)


def fit_two_steps(module, data_dir, batch_size=8):
    """Two optimizer steps on the tiny Fashion-MNIST-format folder; returns (probe, encoder_changed)."""
    probe = GradientProbe()
    before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[probe])
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(data_dir), batch_size=batch_size))
    changed = any(not torch.equal(before[k], v) for k, v in module.encoder.state_dict().items())
    return probe, changed
