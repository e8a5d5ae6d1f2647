"""JPEG decoding on the training device, for image folders whose CPU loader would starve a GPU.

``ImageFolderDataModule(decode="device")``: the loader's workers only read each file's bytes (about 46 KiB for an
ImageNet-sized JPEG, no decoding), and the whole batch is decoded where it is moved to, by
``torchvision.io.decode_jpeg`` on a list of byte tensors (nvJPEG on a CUDA device, libjpeg on the CPU), then
resized (shorter side) and centre-cropped to ``load_size`` there, as the CPU path does per image in its workers.
The random crops and the rest of the augmentation already run on the device.

Why: decoding a 500x375 JPEG and resizing it costs a CPU core 3-4 ms (``bench/results/jpeg_decode.json``), so a
GPU stepping through a few thousand ImageNet images a second needs more loader cores than a node gives it
(``python -m training plan``, "loader cores per GPU"). Files that ``decode_jpeg`` refuses (ImageNet holds a few
PNG and CMYK files named .JPEG) are decoded one by one with ``decode_image`` on the CPU instead, so one bad file
costs time, not the run. Only the pre-training split takes this path; the kNN bank and test splits, read outside
the training loop, are decoded in the workers as before.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset


class EncodedFolder(Dataset):
    """A ``torchvision.datasets.ImageFolder``'s files as (raw bytes as a 1-D uint8 tensor, label)."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, index: int) -> Tuple[Tensor, int]:
        from torchvision.io import read_file

        path, label = self.folder.samples[index]
        return read_file(path), label


def collate_encoded(items: Sequence[Tuple[Tensor, int]]) -> Tuple[List[Tensor], Tensor]:
    """A batch of files of different lengths: (list of byte tensors, labels)."""
    return [data for data, _ in items], torch.tensor([label for _, label in items], dtype=torch.long)


def decode_batch(data: List[Tensor], size: int, device: torch.device) -> Tensor:
    """(B, 3, size, size) uint8 on ``device``: the batch decoded together, shorter side resized, centre-cropped."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg
    from torchvision.transforms.v2 import functional as TF

    device = torch.device(device)
    try:
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # a PNG or an unsupported JPEG in the batch: one by one on the CPU
        images = [decode_image(d, mode=ImageReadMode.RGB).to(device) for d in data]
    return torch.stack([TF.center_crop(TF.resize(image, size, antialias=True), [size, size]) for image in images])
