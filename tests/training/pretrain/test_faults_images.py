"""Images that decode wrong or not at all (issue 26, items 3 and 5).

16-bit and other PIL modes are scaled to the encoder's channels, not clipped, in every place that opens images
(training folders, ``evaluate`` folders, the device-decode fallback, ``zoo.eval_transform``); a file that cannot
be decoded (truncated, not an image) is named in one error line, or skipped and counted when asked. The images
are made here: PIL writes 16-bit PNGs from uint16 arrays (mode ``I;16``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.zoo_exports import make_export
from training.cli import main
from zoo.errors import ZooError

HEIGHT, WIDTH = 30, 40


def ramp16(seed: int) -> np.ndarray:
    """A 16-bit grey picture whose values span 0..65535 (not only multiples of 257)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 65535, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH)
    noisy = ramp + rng.integers(-3000, 3000, size=ramp.shape)
    picture = np.clip(noisy if seed % 2 else noisy[::-1, ::-1], 0, 65535).astype(np.uint16)
    picture[0, 0], picture[-1, -1] = 0, 65535
    return picture


def as_8_bit(picture: np.ndarray) -> np.ndarray:
    """The 8-bit PNG of the same picture: each value rounded to the nearest of 256 levels."""
    return np.rint(picture / 257).astype(np.uint8)


def twin_folders(root: Path, n_per_class: int = 5) -> tuple:
    """``root/b8`` and ``root/b16``: the same pictures as 8-bit and as 16-bit grey PNGs, two classes."""
    for c, cls in enumerate(("a", "b")):
        for i in range(n_per_class):
            picture = ramp16(10 * c + i)
            for name, pixels in (("b8", as_8_bit(picture)), ("b16", picture)):
                (root / name / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / name / cls / f"{i}.png")
    assert Image.open(root / "b16" / "a" / "0.png").mode == "I;16"
    return root / "b8", root / "b16"


def noise_folder(root: Path, n_per_class: int = 6, size: int = 48) -> Path:
    """Two classes of RGB noise PNGs (and one JPEG per class), large enough that half a file is half an image."""
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("bright", "dark")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            pixels = np.clip(rng.integers(-40, 40, size=(size, size, 3)) + (190 if c == 0 else 60), 0, 255)
            image = Image.fromarray(pixels.astype(np.uint8))
            image.save(root / cls / (f"{i}.jpg" if i == 0 else f"{i}.png"), **({"quality": 90} if i == 0 else {}))
    return root


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# 16-bit and other modes ------------------------------------------------------------------------------------------
def test_a_16_bit_training_folder_loads_like_its_8_bit_twin(tmp_path):
    from training.pretrain.data import ImageFolderDataModule

    b8, b16 = twin_folders(tmp_path)
    batches = []
    for folder in (b8, b16):
        (folder / "train").mkdir()
        for cls in ("a", "b"):
            (folder / cls).rename(folder / "train" / cls)
        (folder / "val").symlink_to(folder / "train")
        dm = ImageFolderDataModule(root=str(folder), load_size=24, batch_size=4, eval_batch_size=16)
        dm.setup()
        batches.append(next(iter(dm.knn_bank_dataloader()))[0])
    assert batches[0].shape == (10, 3, 24, 24) and batches[0].dtype == batches[1].dtype == torch.uint8
    assert (batches[1].int() - batches[0].int()).abs().max() <= 1
    assert batches[1].float().mean() < 200  # before: convert("RGB") clipped the 16-bit values, nearly all 255


def test_evaluate_on_a_16_bit_folder_gives_the_8_bit_numbers(tmp_path):
    import zoo
    from training.downstream.datasets import folder_datamodule
    from training.evaluate_command import run_protocol

    b8, b16 = twin_folders(tmp_path)
    encoder = zoo.load_encoder(make_export(tmp_path / "exp", seed=0))
    results = [run_protocol(encoder, folder_datamodule(str(f), load_size=32), "knn", k=3) for f in (b8, b16)]
    assert torch.allclose(results[1]["embedding"], results[0]["embedding"], atol=0.05)
    assert results[1]["top1"] == results[0]["top1"]


def test_eval_transform_scales_every_mode_like_its_8_bit_picture():
    """16-bit (I;16, I;16B, I, F) grey within 1/255 of the 8-bit picture; palette, alpha, CMYK and 1-bit images
    through the same function to 1 and 3 channels."""
    from zoo.pretrained.exported import EvalTransform

    picture = ramp16(3)
    grey8 = Image.fromarray(as_8_bit(picture))
    sixteen = {"I;16": Image.fromarray(picture), "I;16B": Image.fromarray(picture.astype(">u2")),
               "I": Image.fromarray(picture.astype(np.int32)), "F": Image.fromarray(picture.astype(np.float32)),
               "F in [0, 1]": Image.fromarray((picture / 65535).astype(np.float32))}
    assert [im.mode for im in sixteen.values()] == ["I;16", "I;16B", "I", "F", "F"]
    rgb = Image.fromarray(np.stack([as_8_bit(picture), as_8_bit(picture)[::-1], as_8_bit(picture)[:, ::-1]], -1))
    palette = rgb.quantize(64)
    others = {"P": (palette, palette.convert("RGB")), "LA": (grey8.convert("LA"), grey8),
              "RGBA": (rgb.convert("RGBA"), rgb), "CMYK": (rgb.convert("CMYK"), rgb.convert("CMYK").convert("RGB")),
              "1": (grey8.convert("1"), grey8.convert("1").convert("L"))}
    for channels in (1, 3):
        transform = EvalTransform({"input": {"channels": channels, "size": [HEIGHT, WIDTH], "mean": [0.0] * channels,
                                             "std": [1.0] * channels}})
        reference = transform(grey8)
        assert reference.shape == (channels, HEIGHT, WIDTH)
        for mode, image in sixteen.items():
            assert (transform(image) - reference).abs().max() <= 1 / 255 + 1e-6, mode
        for mode, (image, same) in others.items():
            assert torch.equal(transform(image), transform(same)), mode


def test_the_device_decode_fallback_scales_a_16_bit_png(tmp_path):
    from torchvision.io import read_file

    from training.pretrain.device_decode import decode_batch

    b8, b16 = twin_folders(tmp_path, n_per_class=1)
    files = [b8 / "a" / "0.png", b16 / "a" / "0.png"]
    out = decode_batch([read_file(str(f)) for f in files], 24, torch.device("cpu"))
    assert out.dtype == torch.uint8 and torch.equal(out[1], out[0])


# unreadable files: named in one line, or skipped and counted -------------------------------------------------------
def test_evaluate_names_an_undecodable_image_in_one_line(tmp_path, capsys):
    export = make_export(tmp_path / "exp", seed=0)
    pngs = noise_folder(tmp_path / "pngs")
    bad = cut_in_half(pngs / "dark" / "3.png")
    out = tmp_path / "results"
    args = ["evaluate", "--encoder", str(export), "--data", str(pngs), "--k", "3", "--out", str(out)]
    assert main(args) == 2
    assert capsys.readouterr().err == (f"error: cannot decode image {bad}: image file is truncated; "
                                       "pass --skip-unreadable true to skip unreadable files\n")
    bad.write_bytes(b"")
    assert main(args) == 2
    assert capsys.readouterr().err == (f"error: cannot decode image {bad}: not an image file Pillow can read; "
                                       "pass --skip-unreadable true to skip unreadable files\n")
    assert not out.exists()


def test_evaluate_skips_unreadable_images_when_asked_and_says_which(tmp_path, capsys):
    export = make_export(tmp_path / "exp", seed=0)
    pngs = noise_folder(tmp_path / "pngs")
    jpeg = cut_in_half(pngs / "bright" / "0.jpg")
    empty = pngs / "dark" / "5.png"
    empty.write_bytes(b"")
    assert main(["evaluate", "--encoder", str(export), "--data", str(pngs), "--k", "3",
                 "--skip-unreadable", "true"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["n_fit"] + result["n_val"] + result["n_test"] == 10 and result["skipped_unreadable"] == 2
    line = captured.err.splitlines()[-1]
    assert line.startswith(f"skipped 2 unreadable images: {jpeg} (image file is truncated") and captured.err.count(
        "\n") == 1
    assert line.endswith(f"), {empty} (not an image file Pillow can read)")
    assert "--skip-unreadable True" in result["command"]


def test_loading_truncated_images_is_not_turned_on_behind_our_back(tmp_path, monkeypatch):
    """Some libraries set ``ImageFile.LOAD_TRUNCATED_IMAGES``; a truncated file must still be named (the flag
    would otherwise let PIL fill the missing half with grey), with and without loader worker processes."""
    from PIL import ImageFile

    from training.pretrain.data import SplitFolderDataModule

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    pngs = noise_folder(tmp_path / "pngs")
    bad = cut_in_half(pngs / "bright" / "0.jpg")
    for workers in (0, 2):
        dm = SplitFolderDataModule(root=str(pngs), load_size=16, test_fraction=0.5, num_workers=workers,
                                   eval_batch_size=4)
        with pytest.raises(ZooError) as caught:
            [batch for loader in (dm.knn_bank_dataloader(), dm.test_dataloader()) for batch in loader]
        assert str(caught.value).startswith(f"cannot decode image {bad}: image file is truncated (")
        assert str(caught.value).endswith("; pass --data.skip_unreadable true to skip unreadable files")
        assert "\n" not in str(caught.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is left as it was


def write_fit_recipe(tmp_path: Path, root: Path) -> Path:
    """A tiny YADIM run on ``root/{train,val}``: every training image is in one of the epoch's three batches."""
    recipe = tmp_path / "folder.yaml"
    recipe.write_text(f"""
seed_everything: 0
trainer: {{max_epochs: 1, accelerator: cpu, devices: 1, logger: false, enable_checkpointing: false,
          default_root_dir: {tmp_path / "run"}}}
model:
  method: yadim
  augment: {{size: 32, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}
  encoder: {{in_channels: 3, image_size: 32, ndf: 4, n_rkhs: 8, depth: 1}}
data:
  class_path: training.pretrain.data.ImageFolderDataModule
  init_args: {{root: {root}, load_size: 32, batch_size: 4, num_workers: 2}}
""")
    return recipe


def test_fit_stops_with_one_line_naming_an_undecodable_image(tmp_path, capsys):
    for split in ("train", "val"):
        noise_folder(tmp_path / "pngs" / split)
    bad = cut_in_half(tmp_path / "pngs" / "train" / "dark" / "2.png")
    assert main(["fit", "--config", str(write_fit_recipe(tmp_path, tmp_path / "pngs"))]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: cannot decode image {bad}: image file is truncated; "
                        "pass --data.skip_unreadable true to skip unreadable files\n")
    assert err.count("\n") == 1, err


def test_fit_skips_unreadable_images_when_asked(tmp_path, capsys):
    for split in ("train", "val"):
        noise_folder(tmp_path / "pngs" / split)
    truncated = cut_in_half(tmp_path / "pngs" / "train" / "dark" / "2.png")
    not_an_image = tmp_path / "pngs" / "train" / "bright" / "4.png"
    not_an_image.write_bytes(b"not a png")
    recipe = write_fit_recipe(tmp_path, tmp_path / "pngs")
    assert main(["fit", "--config", str(recipe), "--data.skip_unreadable", "true"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped ")]
    assert lines == [f"skipped 2 unreadable images: {not_an_image} (not an image file Pillow can read), "
                     f"{truncated} (image file is truncated)"]


def test_a_skipped_file_keeps_training_batches_full_on_either_decode_path(tmp_path):
    """Pre-training batches keep their size (DDP and the MoCo queue need it): a skipped file's place is taken by
    another image of the batch. Without the option, the device path names the file as the worker path does."""
    from training.pretrain.data import ImageFolderDataModule

    for split in ("train", "val"):
        noise_folder(tmp_path / split, n_per_class=3)
    bad = cut_in_half(tmp_path / "train" / "bright" / "0.jpg")
    for decode in ("cpu", "device"):
        dm = ImageFolderDataModule(root=str(tmp_path), load_size=16, batch_size=6, decode=decode,
                                   skip_unreadable=True)
        dm.setup()
        batch = next(iter(dm.train_dataloader()))
        images, labels = dm.transfer_batch_to_device(batch, torch.device("cpu"), 0)
        assert images.shape == (6, 3, 16, 16) and labels.shape == (6,), decode
        assert len({image.numpy().tobytes() for image in images}) == 5, decode  # one image twice
        assert dm.unreadable.summary().startswith(f"skipped 1 unreadable image: {bad} (image file is truncated (")
    dm = ImageFolderDataModule(root=str(tmp_path), load_size=16, batch_size=6, decode="device")
    dm.setup()
    with pytest.raises(ZooError, match=f"^cannot decode image {bad}: image file is truncated"):
        dm.transfer_batch_to_device(next(iter(dm.train_dataloader())), torch.device("cpu"), 0)


def test_a_file_gone_before_it_is_read_is_named_on_either_decode_path(tmp_path):
    from training.pretrain.data import ImageFolderDataModule

    for decode in ("cpu", "device"):
        for split in ("train", "val"):
            noise_folder(tmp_path / decode / split, n_per_class=3)
        dm = ImageFolderDataModule(root=str(tmp_path / decode), load_size=16, batch_size=6, decode=decode)
        dm.setup()
        gone = tmp_path / decode / "train" / "dark" / "2.png"
        gone.unlink()  # listed by setup, removed before the epoch reads it
        with pytest.raises(ZooError) as caught:
            dm.transfer_batch_to_device(next(iter(dm.train_dataloader())), torch.device("cpu"), 0)
        assert str(caught.value) == (f"cannot decode image {gone}: No such file or directory; "
                                     "pass --data.skip_unreadable true to skip unreadable files"), decode


def test_eval_transform_names_a_truncated_file_it_is_given(tmp_path):
    from zoo.pretrained.exported import EvalTransform

    path = cut_in_half(noise_folder(tmp_path / "pngs") / "dark" / "1.png")
    transform = EvalTransform({"input": {"channels": 3, "size": [16, 16], "mean": [0.0] * 3, "std": [1.0] * 3}})
    with pytest.raises(ZooError, match=f"^cannot decode image {path}: image file is truncated$"):
        transform(Image.open(path))
