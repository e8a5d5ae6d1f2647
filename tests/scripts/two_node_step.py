"""Run by tests/training/pretrain/test_multinode.py: one "node" of a 2-node x 1-process Lightning DDP run on the loopback interface.

    MASTER_ADDR=127.0.0.1 MASTER_PORT=P NODE_RANK=r WORLD_SIZE=2 python tests/scripts/two_node_step.py OUT DATA

The environment is what a cluster launcher (SLURM's srun through Lightning, or torchrun --nnodes 2 --node-rank r)
gives each node; the Trainer is the recipes' one with ``num_nodes=2, devices=1``, gloo on the CPU. Two SimCLR
steps with negatives gathered across the nodes; each node records its batches, losses and first-step gradients.
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from tests.scripts import ddp_step  # noqa: F401  (registers the test encoder)
from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.module import ContrastiveModule


class Record(pl.Callback):
    """Per step and rank: the images, the loss, the all-reduced gradients and the weights before the step."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        step, rank = trainer.global_step, trainer.global_rank
        torch.save(batch[0].clone(), self.out / f"images_{step}_{rank}.pt")
        torch.save({k: v.clone() for k, v in module.state_dict().items()}, self.out / f"weights_{step}_{rank}.pt")

    def on_before_optimizer_step(self, trainer, module, optimizer):
        grads = {n: p.grad.clone() for n, p in module.encoder.named_parameters() if p.grad is not None}
        torch.save(grads, self.out / f"grads_{trainer.global_step}_{trainer.global_rank}.pt")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        (self.out / f"loss_{trainer.global_step - 1}_{trainer.global_rank}.txt").write_text(
            f"{outputs['loss'].item():.10f}")


def main() -> None:
    out, data, model = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    pl.seed_everything(0)
    module = ContrastiveModule(**model)
    trainer = pl.Trainer(accelerator="cpu", devices=1, num_nodes=2, strategy="ddp", max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[Record(out)])
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=data, batch_size=8))
    (out / f"world_{trainer.global_rank}.json").write_text(json.dumps(
        {"world_size": trainer.world_size, "node_rank": trainer.node_rank, "num_nodes": trainer.num_nodes}))


if __name__ == "__main__":
    main()
