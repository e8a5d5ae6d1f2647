"""``ImageFolderDataModule(decode="device")``: workers read bytes, the batch is decoded where it is moved to.

On this CPU-only machine the device is the CPU (``decode_jpeg`` on a list of byte tensors); the same call takes
``device="cuda"`` on a GPU. Reference: the CPU path of the same datamodule (PIL decode in the workers, then the
same resize and centre crop), image by image.
"""

from __future__ import annotations

import pytest
import torch

from training.pretrain.data import ImageFolderDataModule
from training.pretrain.device_decode import decode_batch
from zoo.errors import ZooError


def _jpeg_tree(root, sizes=((500, 375), (375, 500), (260, 300), (301, 257))):
    """root/{train,val}/{a,b}/i.JPEG, ImageNet-like aspect ratios, plus one PNG named .JPEG (ImageNet has such)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c, cls in enumerate(("a", "b")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                # smooth content: JPEG decoders agree on it to within rounding
                ramp = torch.linspace(0, 1, w)[None, :] * torch.linspace(0, 1, h)[:, None]
                rgb = torch.stack([ramp, ramp.flip(0), torch.full_like(ramp, 0.3 + 0.2 * c)], -1)
                rgb = (rgb * 200 + torch.rand(h, w, 3, generator=g) * 10).to(torch.uint8).numpy()
                Image.fromarray(rgb).save(folder / f"{i}.JPEG", quality=90)
    from PIL import Image as _Image

    _Image.new("RGB", (320, 240), (10, 200, 30)).save(root / "train" / "b" / "png_named.JPEG", format="PNG")


def _batches(dm):
    dm.setup()
    return next(iter(dm.train_dataloader()))


def test_device_decode_matches_the_worker_path(tmp_path):
    _jpeg_tree(tmp_path)
    cpu = ImageFolderDataModule(root=str(tmp_path), load_size=64, batch_size=9, seed=3)
    dev = ImageFolderDataModule(root=str(tmp_path), load_size=64, batch_size=9, seed=3, decode="device")
    reference, ref_labels = _batches(cpu)
    raw, labels, paths = _batches(dev)
    assert isinstance(raw, list) and all(r.dtype == torch.uint8 and r.dim() == 1 for r in raw)
    assert torch.equal(labels, ref_labels)
    images, moved_labels = dev.transfer_batch_to_device((raw, labels, paths), torch.device("cpu"), 0)
    assert images.shape == reference.shape == (9, 3, 64, 64) and images.dtype == torch.uint8
    assert torch.equal(moved_labels, labels)
    # the same files through two JPEG decoders (PIL's and torchvision's libjpeg): equal up to rounding
    diff = (images.int() - reference.int()).abs()
    assert diff.max() <= 3 and diff.float().mean() < 0.5
    # the PNG named .JPEG made the batched call fail and was decoded on its own: it is in the batch, intact
    png = [i for i, r in enumerate(raw) if bytes(r[:4].tolist()) == b"\x89PNG"]
    assert len(png) == 1 and torch.equal(images[png[0]], reference[png[0]])
    assert images[png[0], :, 32, 32].tolist() == [10, 200, 30]


def test_only_the_pretraining_split_is_left_encoded(tmp_path):
    _jpeg_tree(tmp_path)
    dm = ImageFolderDataModule(root=str(tmp_path), load_size=32, batch_size=4, decode="device",
                               eval_batch_size=16)
    dm.setup()
    bank, _ = next(iter(dm.knn_bank_dataloader()))
    test, _ = next(iter(dm.test_dataloader()))
    assert bank.shape == (9, 3, 32, 32) and test.shape == (8, 3, 32, 32)


def test_decode_batch_alone_and_bad_mode(tmp_path):
    from torchvision.io import read_file

    _jpeg_tree(tmp_path)
    files = sorted((tmp_path / "val" / "a").glob("*.JPEG"))
    out = decode_batch([read_file(str(f)) for f in files], 48, torch.device("cpu"))
    assert out.shape == (4, 3, 48, 48) and out.dtype == torch.uint8
    with pytest.raises(ZooError, match="decode must be 'cpu' .* or 'device'"):
        ImageFolderDataModule(root=str(tmp_path), decode="gpu")


def test_a_training_step_takes_the_device_path(tmp_path):
    """Lightning hands the datamodule's ``transfer_batch_to_device`` the raw batch; the step sees decoded images."""
    import pytorch_lightning as pl

    from training.pretrain.module import ContrastiveModule

    _jpeg_tree(tmp_path)
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((tuple(batch[0].shape), batch[0].dtype))

    dm = ImageFolderDataModule(root=str(tmp_path), load_size=40, batch_size=4, decode="device")
    module = ContrastiveModule(method="yadim", augment=dict(size=32, mean=[0.5] * 3, std=[0.25] * 3),
                               encoder=dict(in_channels=3, image_size=32, ndf=4, n_rkhs=8, depth=1))
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Spy()],
                         default_root_dir=str(tmp_path / "run"))
    trainer.fit(module, datamodule=dm)
    assert seen == [((4, 3, 40, 40), torch.uint8)] * 2 and trainer.global_step == 2
