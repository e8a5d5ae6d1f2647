"""Run by tests/training/pretrain/test_distributed.py: one Lightning DDP training step on 2 CPU processes (gloo).

    python tests/scripts/ddp_step.py OUT_DIR DATA_DIR MODEL_JSON

Each rank records, under OUT_DIR: its first batch of images, its loss, the encoder gradients after DDP's
all-reduce, the initial weights (rank 0) and the extractor's state after the steps (teachers, queues).
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn as nn

from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.module import ContrastiveModule
from zoo.parts.encoders.base import ENCODERS, Encoder


@ENCODERS.register("ddp_test_conv")
class DDPTestConv(Encoder):
    """A small encoder without batch norm: SyncBatchNorm has no CPU implementation, and per-process batch
    statistics would differ from one process's statistics over the concatenated batch."""

    def __init__(self, *, in_channels: int = 1, width: int = 8) -> None:
        super().__init__()
        self.in_channels, self.num_features, self.map_names, self.min_size = in_channels, width, ("out",), 4
        self.net = nn.Sequential(nn.Conv2d(in_channels, width, 3, 2), nn.ReLU(), nn.Conv2d(width, width, 3, 2))

    def _maps(self, x, wanted):
        return {"out": self.net(x)}


class Record(pl.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_start(self, trainer, module):
        if trainer.global_rank == 0:
            torch.save({k: v.clone() for k, v in module.state_dict().items()}, self.out / "init.pt")

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:
            torch.save(batch[0].clone(), self.out / f"images_{trainer.global_rank}.pt")

    def on_before_optimizer_step(self, trainer, module, optimizer):
        if trainer.global_step == 0:
            grads = {n: p.grad.clone() for n, p in module.encoder.named_parameters() if p.grad is not None}
            torch.save(grads, self.out / f"grads_{trainer.global_rank}.pt")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        with open(self.out / f"loss_{trainer.global_rank}.txt", "a") as f:
            f.write(f"{outputs['loss'].item():.10f}\n")

    def on_train_end(self, trainer, module):
        torch.save(module.extract.state_dict(), self.out / f"extract_{trainer.global_rank}.pt")


def main() -> None:
    out, data, model = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    max_steps = int(model.pop("max_steps", 1))
    pl.seed_everything(0)
    module = ContrastiveModule(**model)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=max_steps,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Record(out)])
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=data, batch_size=8))


if __name__ == "__main__":
    main()
