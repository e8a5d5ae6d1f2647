"""BYOL's target decay in a real run: the update after optimizer step k uses tau(k/K), k counting from 0
(issue 15, item 5).

BYOL: "τ = 1 − (1 − τbase) · (cos(πk/K) + 1)/2 with k the current training step and K the maximum number of
training steps"; its code evaluates this at the step counter before incrementing it, so the first update uses
k = 0 (τ = τbase). The reference here is that closed form, written out in the test.
"""

import math

import pytorch_lightning as pl
import torch

from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.module import ContrastiveModule

K, BASE = 4, 0.996
TINY_AMDIM = {"name": "amdim", "in_channels": 1, "image_size": 32, "ndf": 8, "n_rkhs": 32, "depth": 1}


def closed_form_tau(k):
    return 1.0 - (1.0 - BASE) * (math.cos(math.pi * k / K) + 1.0) / 2.0


def test_byol_run_uses_tau_of_k_over_k_total_from_k_zero(fmnist_dir):
    pl.seed_everything(0)
    module = ContrastiveModule(method="byol", augment={"size": 32, "mean": [0.5], "std": [0.25]},
                               encoder=TINY_AMDIM, extract={"projector_hidden": 8, "projector_out": 4,
                                                            "predictor_hidden": 8, "base_tau": BASE})
    ext = module.extract
    update = ext.after_optimizer_step
    seen = []  # (global step at the update, tau used, EMA check on one teacher weight)

    def recording_update(encoder, progress):
        before = next(ext.teacher[0].parameters()).detach().clone()
        online = next(encoder.parameters()).detach().clone()
        update(encoder, progress)
        after = next(ext.teacher[0].parameters())
        mixed = ext.last_tau * before + (1.0 - ext.last_tau) * online
        seen.append((module.global_step, ext.last_tau, torch.allclose(after, mixed, atol=1e-7)))

    ext.after_optimizer_step = recording_update
    trainer = pl.Trainer(max_steps=K, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(fmnist_dir), batch_size=8))

    assert int(trainer.estimated_stepping_batches) == K and len(seen) == K
    assert [step for step, _, _ in seen] == list(range(K))
    assert all(ok for _, _, ok in seen)  # the teacher moved by exactly that tau
    for k in (0, 1, 2):
        assert math.isclose(seen[k][1], closed_form_tau(k), rel_tol=0, abs_tol=1e-12), (k, seen[k][1])
    assert seen[0][1] == BASE  # the first update uses tau_base itself
