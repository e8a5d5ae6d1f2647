"""The checks added where the type checker showed a value may be missing: each is one clear line, not a TypeError
or AttributeError deep inside a loop (mypy over training/, issue 27)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import IterableDataset

from training.downstream.callback_inputs import eval_encoding, fit_datamodule
from training.downstream.frozen import fit_linear_probe
from training.pretrain.batches import ResumableBatches, dataset_size
from training.pretrain.data import InMemoryImages
from zoo.errors import ZooError


class Stream(IterableDataset):
    def __iter__(self):
        return iter(range(3))


def test_dataset_size_is_the_length_or_one_line():
    images = InMemoryImages(torch.zeros(5, 1, 4, 4, dtype=torch.uint8), torch.arange(5))
    assert dataset_size(images) == 5
    assert dataset_size(torch.utils.data.Subset(images, [0, 2])) == 2
    with pytest.raises(ZooError, match=r"^the dataset Stream has no length \(no __len__\)"):
        dataset_size(Stream())
    with pytest.raises(ZooError, match="Stream has no length"):
        ResumableBatches(Stream(), batch_size=2)


def test_online_callbacks_name_what_the_run_lacks():
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.raises(ZooError, match=r"^OnlineKNN needs the run's data as a datamodule"):
        fit_datamodule(trainer, "OnlineKNN")
    with pytest.raises(ZooError, match=r"^OnlineLinear needs a module with encode_for_eval .*; LightningModule has "
                                       r"none$"):
        eval_encoding(pl.LightningModule(), "OnlineLinear")

    class Encoding(pl.LightningModule):
        def encode_for_eval(self, images):
            return images * 2

    assert torch.equal(eval_encoding(Encoding(), "OnlineKNN")(torch.ones(2)), torch.full((2,), 2.0))


def test_a_linear_probe_with_no_weight_decay_to_try_is_one_line():
    x, y = torch.randn(20, 3), torch.arange(20) % 2
    with pytest.raises(ZooError, match="^a linear probe needs at least one weight decay to try$"):
        fit_linear_probe((x[:15], y[:15]), (x[15:], y[15:]), num_classes=2, weight_decays=())
