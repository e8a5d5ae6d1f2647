"""JPEG decoding on the training device, for image folders whose CPU loader would starve a GPU.

``ImageFolderDataModule(decode="device")``: the loader's workers only read each file's bytes (about 46 KiB for an
ImageNet-sized JPEG, no decoding), and the whole batch is decoded where it is moved to, by
``torchvision.io.decode_jpeg`` on a list of byte tensors (nvJPEG on a CUDA device, libjpeg on the CPU), then
resized (shorter side) and centre-cropped to ``load_size`` there, as the CPU path does per image in its workers.
The random crops and the rest of the augmentation already run on the device.

Why: decoding a 500x375 JPEG and resizing it costs a CPU core 3-4 ms (``bench/results/jpeg_decode.json``), so a
GPU stepping through a few thousand ImageNet images a second needs more loader cores than a node gives it
(``python -m training plan``, "loader cores per GPU"). Files that do not look like whole JPEGs (no SOI marker at
the start or no EOI at the end: ImageNet holds a few PNG and CMYK files named .JPEG, and a truncated file would
otherwise come back from nvJPEG half grey) and batches that ``decode_jpeg`` refuses are decoded one by one on the
CPU by ``zoo.images.read_image``, the conversion every other path uses (16-bit PNGs scaled, truncation caught),
so one odd file costs time, not the run. A file that cannot be decoded at all is reported with its path
(``decode_files``) for the datamodule to stop the run or skip it. Only the pre-training split takes this path;
the kNN bank and test splits, read outside the training loop, are decoded in the workers as before.
"""

from __future__ import annotations

import io
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from zoo.images import UnreadableImage, read_image


class EncodedFolder(Dataset):
    """A ``torchvision.datasets.ImageFolder``'s files as (raw bytes as a 1-D uint8 tensor, label, path); a file
    that cannot be read gives no bytes (``decode_files`` then reads it again to say why)."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, index: int) -> Tuple[Tensor, int, str]:
        from torchvision.io import read_file

        path, label = self.folder.samples[index]
        try:
            return read_file(path), label, path
        except (OSError, RuntimeError):  # torchvision reports a failed read as a RuntimeError
            return torch.empty(0, dtype=torch.uint8), label, path


def collate_encoded(items: Sequence[Tuple[Tensor, int, str]]) -> Tuple[List[Tensor], Tensor, List[str]]:
    """A batch of files of different lengths: (list of byte tensors, labels, paths)."""
    return ([data for data, _, _ in items], torch.tensor([label for _, label, _ in items], dtype=torch.long),
            [path for _, _, path in items])


def _whole_jpeg(data: Tensor) -> bool:
    """Whether ``data`` starts with a JPEG's SOI marker and ends with its EOI marker (a cut file does not)."""
    return data.numel() >= 4 and bytes(data[:2].tolist()) == b"\xff\xd8" and bytes(data[-2:].tolist()) == b"\xff\xd9"


def _decode_on_cpu(data: Tensor, name: str, on_disk: bool) -> Tensor:
    """One file through ``zoo.images.read_image``; one whose read failed in the worker (no bytes) is read again
    from disk, ``name`` being its path, so the error says why."""
    source = name if on_disk and data.numel() == 0 else io.BytesIO(data.numpy().tobytes())
    return read_image(source, 3, name=name)


def decode_files(data: List[Tensor], size: int, device: torch.device,
                 paths: Optional[Sequence[str]] = None) -> Tuple[Optional[Tensor], List[Tuple[int, str, str]]]:
    """(decoded, unreadable): the files that decode, as (N, 3, size, size) uint8 on ``device`` in batch order,
    shorter side resized and centre-cropped (None if none does), and those that do not, as (place in the batch,
    name, reason), named by ``paths``."""
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as TF

    device = torch.device(device)
    names = list(paths) if paths is not None else [f"file {i} of the batch" for i in range(len(data))]
    decoded: Dict[int, Tensor] = {}
    jpegs = [i for i, d in enumerate(data) if _whole_jpeg(d)]
    if jpegs:
        try:
            batch = decode_jpeg([data[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
            decoded.update(zip(jpegs, batch, strict=True))
        except RuntimeError:  # a corrupt or unsupported JPEG in the batch: all of them one by one on the CPU
            decoded.clear()
    unreadable: List[Tuple[int, str, str]] = []
    for i, d in enumerate(data):
        if i not in decoded:
            try:
                decoded[i] = _decode_on_cpu(d, names[i], on_disk=paths is not None).to(device)
            except UnreadableImage as err:
                unreadable.append((i, names[i], err.reason))
    images = [TF.center_crop(TF.resize(decoded[i], size, antialias=True), [size, size]) for i in sorted(decoded)]
    return (torch.stack(images) if images else None), unreadable


def decode_batch(data: List[Tensor], size: int, device: torch.device,
                 paths: Optional[Sequence[str]] = None) -> Tensor:
    """(B, 3, size, size) uint8 on ``device``: the batch decoded together, shorter side resized, centre-cropped;
    a file that cannot be decoded raises ``UnreadableImage`` naming it."""
    images, unreadable = decode_files(data, size, device, paths)
    if unreadable:
        raise UnreadableImage(*unreadable[0][1:])
    return images if images is not None else torch.empty(0, 3, size, size, dtype=torch.uint8, device=device)
