"""Every method row trains through the real LightningModule; YAML-only methods train too."""

import pytest
import pytorch_lightning as pl
import torch

import zoo
from tests.helpers.harness import fit_two_steps
from tests.helpers.tiny import TINY
from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.module import ContrastiveModule


def test_every_row_has_tiny_settings():
    assert set(TINY) == set(zoo.list_methods())


@pytest.mark.parametrize("method", sorted(TINY))
def test_method_row_takes_two_steps(method, fmnist_dir):
    pl.seed_everything(0)
    module = ContrastiveModule(method=method, **TINY[method])
    probe, changed = fit_two_steps(module, fmnist_dir)
    assert len(probe.losses) == 2 and all(torch.isfinite(torch.tensor(probe.losses)))
    assert len(probe.grad_norms) == 2 and all(g > 0 for g in probe.grad_norms)
    assert changed


def test_yaml_only_method_trains_without_new_code(fmnist_dir):
    """SimCLR augmentation + AMDIM encoder + last map + dot + NCE: a combination no row names."""
    pl.seed_everything(0)
    module = ContrastiveModule(
        method=None, name="simclr_aug_amdim",
        augment={"name": "simclr", "size": 32, "mean": [0.5], "std": [0.25]},
        encoder={"name": "amdim", "in_channels": 1, "ndf": 8, "n_rkhs": 32, "depth": 1},
        extract={"name": "last_map", "pairing": "all_views"},
        similarity={"name": "dot", "scale_by_sqrt_dim": True, "tanh_clip": 20.0},
        loss={"name": "nce"},
    )
    assert module.method.name == "simclr_aug_amdim" and module.method.encoder.name == "amdim"
    probe, changed = fit_two_steps(module, fmnist_dir)
    assert all(torch.isfinite(torch.tensor(probe.losses))) and changed


def test_yaml_only_method_needs_every_part():
    with pytest.raises(zoo.ZooError, match="every characteristic needs a part name; missing for"):
        ContrastiveModule(method=None, augment={"name": "simclr"})


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "lars"])
def test_optimizers_leave_biases_and_norms_without_weight_decay(optimizer, fmnist_dir):
    module = ContrastiveModule(method="yadim", optimizer=optimizer, weight_decay=1e-4, lr=0.1, warmup_epochs=1,
                               **TINY["yadim"])
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_train_batches=3)
    trainer.fit(module, datamodule=FashionMNISTDataModule(root=str(fmnist_dir), batch_size=8))
    opt = trainer.optimizers[0]
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 1e-4 and plain["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim <= 1 for p in plain["params"])
    assert type(opt).__name__.lower() == {"adam": "adam", "adamw": "adamw", "sgd": "sgd", "lars": "lars"}[optimizer]
    # 6 steps: 3 of linear warm-up to lr 0.1, then cosine decay to 0 over the last 3
    assert trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)


def test_bad_optimizer_and_schedule_names():
    with pytest.raises(zoo.ZooError, match="unknown optimizer 'lamb'"):
        ContrastiveModule(method="yadim", optimizer="lamb", **TINY["yadim"])
    with pytest.raises(zoo.ZooError, match="unknown schedule 'step'"):
        ContrastiveModule(method="yadim", schedule="step", **TINY["yadim"])
