"""Datamodules yielding (uint8 images (B, C, H, W), labels) batches; augmentation happens on the device.

Datasets that fit in memory (Fashion-MNIST, CIFAR-10, STL-10) are held as one uint8 tensor and batches are
sliced from it, with no per-sample Python work. ImageFolder decodes in worker processes and resizes every image
to a fixed ``load_size`` square so batches can be stacked. Every datamodule also serves the labelled split used
as the kNN bank (``knn_bank_dataloader``) and the labelled test split (``test_dataloader``).

A folder image that cannot be decoded (truncated, not an image) is reported by the worker that met it, in the
batch, and the main process decides (``UnreadableFiles``): by default the run stops with one line naming the
file; with ``skip_unreadable`` it is left out of evaluation batches, its place in a pre-training batch is taken by
another image of the batch, and a line at the end counts and names them.
"""

from __future__ import annotations

import functools
import gzip
import socket
import sys
from bisect import bisect_left
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Literal, NamedTuple, Optional, Sequence, Tuple, overload

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from training.pretrain.batches import ResumableBatches, dataset_size
from zoo.errors import ZooError
from zoo.images import UnreadableImage, read_image
from zoo.values import check_values, integer_at_least

#: what the datamodules' numeric settings may be (a contrastive batch compares at least two images); checked here
#: and, as ``data.init_args.KEY``, where ``fit`` reads the recipe
VALUES = {"batch_size": integer_at_least(2), "num_workers": integer_at_least(0), "eval_batch_size": integer_at_least(1)}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DATA_HOME = Path.home() / ".cache" / "contrastive-zoo" / "data"
DOWNLOAD_TIMEOUT_S = 30.0  # a dataset mirror that stops answering fails after this long instead of hanging


class InMemoryImages(Dataset):
    """uint8 images and int64 labels in memory; ``__getitems__`` slices whole batches at once."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ZooError(f"expected uint8 (N, C, H, W) images and N labels, got {images.dtype} "
                           f"{tuple(images.shape)} and {len(labels)} labels")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> Tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices)
        return self.images[idx], self.labels[idx]


def batch_as_is(batch):
    """collate_fn for datasets that already return whole batches."""
    return batch


class Received:
    """A loader whose batches pass through ``receive`` in this process; batches it turns into None are left out."""

    def __init__(self, loader: DataLoader, receive: Callable[[Any], Any]) -> None:
        self.loader, self.receive = loader, receive

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            received = self.receive(batch)
            if received is not None:
                yield received


class ImageDataModule(pl.LightningDataModule):
    """Base class. Subclasses implement ``load_split(split) -> Dataset`` for 'pretrain', 'train', 'test'."""

    num_classes: int = 10
    #: (channels, height, width) of the uint8 images a subclass yields, when fixed; ``check-recipe`` feeds
    #: synthetic images of this shape in place of the real data
    image_shape: Optional[Tuple[int, int, int]] = None

    def __init__(self, root: Optional[str] = None, batch_size: int = 256, num_workers: int = 0,
                 download: bool = False, train_subset: Optional[int] = None, knn_bank_subset: Optional[int] = None,
                 eval_batch_size: int = 1024, seed: int = 0) -> None:
        super().__init__()
        check_values({"batch_size": batch_size, "num_workers": num_workers, "eval_batch_size": eval_batch_size},
                     VALUES.get)
        self.save_hyperparameters()
        self.root, self.batch_size, self.num_workers, self.download = root, batch_size, num_workers, download
        self.train_subset, self.knn_bank_subset = train_subset, knn_bank_subset
        self.eval_batch_size, self.seed = eval_batch_size, seed
        self._splits: dict = {}

    # subclasses -------------------------------------------------------------------------------------------
    def load_split(self, split: str) -> Dataset:
        raise NotImplementedError

    # shared ----------------------------------------------------------------------------------------------
    def split(self, split: str) -> Dataset:
        if split not in self._splits:
            data = self.load_split(split)
            limit = {"pretrain": self.train_subset, "train": self.knn_bank_subset}.get(split)
            size = dataset_size(data)
            if limit is not None and limit < size:
                keep = torch.randperm(size, generator=torch.Generator().manual_seed(self.seed))[:limit]
                data = torch.utils.data.Subset(data, keep.tolist()) if not isinstance(data, InMemoryImages) \
                    else InMemoryImages(data.images[keep], data.labels[keep])
            self._splits[split] = data
        return self._splits[split]

    def _loading(self, data: Dataset) -> dict:
        """How batches of ``data`` are loaded: sliced in this process when in memory, else by worker processes."""
        in_memory = isinstance(data, InMemoryImages)
        return {"num_workers": 0 if in_memory else self.num_workers, "collate_fn": batch_as_is if in_memory else None,
                "persistent_workers": bool(self.num_workers) and not in_memory}

    def _receive(self, data: Dataset, keep_size: bool) -> Optional[Callable[[Any], Any]]:
        """What this process does with each batch of ``data``'s loader before handing it on (None: nothing);
        ``keep_size`` for the pre-training stream, whose batches must keep their size."""
        return None

    def _loader(self, data: Dataset, batch_size: int) -> Any:
        """An evaluation loader: every image once, in order."""
        loader = DataLoader(data, batch_size=batch_size, **self._loading(data))
        receive = self._receive(data, keep_size=False)
        return loader if receive is None else Received(loader, receive)

    def setup(self, stage: Optional[str] = None) -> None:
        self.split("pretrain")

    def train_dataloader(self) -> ResumableBatches:
        """Shuffled full batches whose position is saved in checkpoints (a killed run resumes mid-epoch)."""
        data = self.split("pretrain")
        size = dataset_size(data)
        if size < self.batch_size:
            raise ZooError(f"the training split has {size} images, fewer than one batch of {self.batch_size}")
        return ResumableBatches(data, self.batch_size, seed=self.seed, receive=self._receive(data, keep_size=True),
                                **self._loading(data))

    def knn_bank_dataloader(self) -> DataLoader:
        return self._loader(self.split("train"), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split("test"), self.eval_batch_size)


# Fashion-MNIST -----------------------------------------------------------------------------------------------
_FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format MNIST and Fashion-MNIST ship in."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ZooError(f"cannot read {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ZooError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise ZooError(f"{path} is truncated: header says {dims}, found {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find(folder: Path, stem: str) -> Optional[Path]:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _found(folder: Path, stem: str) -> Path:
    """``_find`` for a file that must be there (e.g. removed since the folder was located): one line if not."""
    path = _find(folder, stem)
    if path is None:
        raise ZooError(f"Fashion-MNIST: {folder} has no {stem} (nor {stem}.gz)")
    return path


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (60k train / 10k test, 28x28 grey). Looks for the IDX files in ``root`` (or
    ``root/FashionMNIST/raw``), then in Debian's ``dataset-fashion-mnist`` folder; downloads with torchvision
    only when ``download=True``."""

    image_shape = (1, 28, 28)

    def candidate_dirs(self) -> list:
        if self.root is not None:
            root = Path(self.root).expanduser()
            return [root, root / "FashionMNIST" / "raw"]
        home = DEFAULT_DATA_HOME / "FashionMNIST" / "raw"
        return [DEBIAN_FASHION_MNIST, home]

    def _locate(self) -> Path:
        for folder in self.candidate_dirs():
            if all(_find(folder, stem) for pair in _FMNIST_FILES.values() for stem in pair):
                return folder
        if self.download:
            from torchvision.datasets import FashionMNIST

            target = Path(self.root).expanduser() if self.root else DEFAULT_DATA_HOME
            with download_errors("Fashion-MNIST", target):
                FashionMNIST(str(target), train=True, download=True)
                FashionMNIST(str(target), train=False, download=True)
            return target / "FashionMNIST" / "raw"
        looked = ", ".join(str(d) for d in self.candidate_dirs())
        raise ZooError(f"Fashion-MNIST not found (looked in {looked}); install Debian's dataset-fashion-mnist, "
                       "pass --data.root DIR holding the IDX files, or --data.download true")

    def load_split(self, split: str) -> Dataset:
        folder = self._locate()
        images_stem, labels_stem = _FMNIST_FILES["test" if split == "test" else "train"]
        images = torch.from_numpy(read_idx(_found(folder, images_stem)).copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(_found(folder, labels_stem)).astype(np.int64))
        return InMemoryImages(images, labels)


@contextmanager
def download_errors(name: str, target: Path) -> Iterator[None]:
    """A torchvision dataset download with a time limit on every network read (its urllib calls set none), ending
    in one line when it fails (torchvision's own error lists every mirror on lines of their own)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    except (RuntimeError, OSError) as err:  # urllib's errors and timeouts are OSErrors
        lines = [line.strip() for line in str(err).strip().splitlines()] or [type(err).__name__]
        reason = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
        raise ZooError(f"downloading {name} into {target} failed: {reason}; check the network, or fetch the files "
                       "by hand and pass their folder as --data.root DIR") from None
    finally:
        socket.setdefaulttimeout(previous)


# torchvision datasets ----------------------------------------------------------------------------------------
def _torchvision(factory, root: Optional[str], download: bool, name: str, **kwargs):
    target = str(Path(root).expanduser()) if root else str(DEFAULT_DATA_HOME)
    if download:
        with download_errors(name, Path(target)):
            return factory(target, download=True, **kwargs)
    try:
        return factory(target, download=False, **kwargs)
    except RuntimeError as err:
        raise ZooError(f"{name} not found under {target} ({err}); pass --data.root DIR or --data.download true") \
            from None


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 through torchvision (50k train / 10k test, 32x32 colour)."""

    image_shape = (3, 32, 32)

    def load_split(self, split: str) -> Dataset:
        from torchvision.datasets import CIFAR10

        ds = _torchvision(CIFAR10, self.root, self.download, "CIFAR-10", train=split != "test")
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return InMemoryImages(images, torch.as_tensor(ds.targets))


class STL10DataModule(ImageDataModule):
    """STL-10 through torchvision: pre-training on 'train+unlabeled' (105k, 96x96), kNN bank on the 5k
    labelled train images, test on the 8k test images."""

    image_shape = (3, 96, 96)

    def load_split(self, split: str) -> Dataset:
        from torchvision.datasets import STL10

        which = {"pretrain": "train+unlabeled", "train": "train", "test": "test"}[split]
        ds = _torchvision(STL10, self.root, self.download, "STL-10", split=which)
        return InMemoryImages(torch.from_numpy(ds.data), torch.from_numpy(ds.labels.astype(np.int64)))


class Unreadable(NamedTuple):
    """What a folder dataset returns in place of (image, label) for a file it cannot decode."""

    path: str
    reason: str


class FolderBatch(NamedTuple):
    """A batch as a folder's loader workers send it: the readable images and their labels, and the unreadable
    files as (place in the batch, path, reason); ``size`` counts both."""

    images: Optional[Tensor]
    labels: Tensor
    unreadable: List[Tuple[int, str, str]]
    size: int


def collate_readable(items: Sequence[Any]) -> FolderBatch:
    """collate_fn of the folder datasets: the readable items stacked, the ``Unreadable`` ones listed."""
    unreadable = [(i, item.path, item.reason) for i, item in enumerate(items) if isinstance(item, Unreadable)]
    readable = [item for item in items if not isinstance(item, Unreadable)]
    images = torch.stack([image for image, _ in readable]) if readable else None
    return FolderBatch(images, torch.tensor([label for _, label in readable], dtype=torch.long), unreadable,
                       len(items))


class UnreadableFiles:
    """The folder images that could not be decoded, settled in the main process (a worker's exception would reach
    the user as a page of traceback): the first one stops the run with one line naming it and ``option``, the
    command-line option that skips them; with ``skip`` they are left out and counted (``summary``)."""

    def __init__(self, skip: bool, option: str) -> None:
        self.skip, self.option = skip, option
        self.files: Dict[str, str] = {}  # path -> reason, each file once however often it was met

    @overload
    def settle(self, batch: FolderBatch, keep_size: Literal[True]) -> Tuple[Tensor, Tensor]: ...

    @overload
    def settle(self, batch: FolderBatch, keep_size: bool) -> Optional[Tuple[Tensor, Tensor]]: ...

    def settle(self, batch: FolderBatch, keep_size: bool) -> Optional[Tuple[Tensor, Tensor]]:
        """(images, labels) of ``batch`` without its unreadable files; with ``keep_size`` (pre-training: DDP and
        the MoCo queue need full batches) each one's place is taken by the next readable image of the batch.
        None when an evaluation batch has no readable image."""
        for _, path, reason in batch.unreadable:
            if not self.skip:
                raise ZooError(f"cannot decode image {path}: {reason}; pass {self.option} to skip unreadable files")
            self.files.setdefault(path, reason)
        if batch.images is None and keep_size:
            raise ZooError(f"none of the {batch.size} images of a training batch can be decoded (the first: "
                           f"{batch.unreadable[0][1]}: {batch.unreadable[0][2]}); check the image folder")
        if batch.images is None:
            return None
        if not batch.unreadable or not keep_size:
            return batch.images, batch.labels
        bad = {place for place, _, _ in batch.unreadable}
        readable = [place for place in range(batch.size) if place not in bad]
        rows = torch.tensor([bisect_left(readable, place) % len(readable) for place in range(batch.size)])
        return batch.images[rows.to(batch.images.device)], batch.labels[rows.to(batch.labels.device)]

    def summary(self) -> Optional[str]:
        """One line counting the skipped files and naming the first few (by path); None when there were none."""
        if not self.files:
            return None
        named = sorted(self.files.items())
        listed = ", ".join(f"{path} ({reason})" for path, reason in named[:3])
        more = f" and {len(named) - 3} more" if len(named) > 3 else ""
        return f"skipped {len(named)} unreadable image{'s' * (len(named) > 1)}: {listed}{more}"


class _ResizedFolder(Dataset):
    """An ImageFolder's images as RGB uint8, shorter side resized to ``load_size`` and centre-cropped; a file that
    cannot be decoded comes back as ``Unreadable`` for the main process to settle."""

    def __init__(self, folder, load_size: int) -> None:
        self.folder, self.load_size = folder, load_size

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> Any:
        from torchvision.transforms.v2 import functional as TF

        path, label = self.folder.samples[index]
        try:
            image = read_image(path, 3)
        except UnreadableImage as err:
            return Unreadable(path, err.reason)
        return TF.center_crop(TF.resize(image, self.load_size), [self.load_size, self.load_size]), label


class ImageFolderDataModule(ImageDataModule):
    """Any ``root/{train,val}/<class>/<image>`` tree (ImageNet layout). Images are decoded in workers, resized
    (shorter side) and centre-cropped to ``load_size``; random crops happen later, on the device.

    ``decode="device"``: the workers only read the files, and each pre-training batch is decoded on the training
    device (``training.pretrain.device_decode``: nvJPEG on a GPU), for GPUs that CPU decoding would starve.

    ``skip_unreadable``: files that cannot be decoded are skipped and counted (a line at the end of the run names
    them) instead of stopping the run; ``unreadable`` keeps them."""

    def __init__(self, root: str = "", load_size: int = 256, train_dir: str = "train", test_dir: str = "val",
                 decode: str = "cpu", skip_unreadable: bool = False, **kwargs) -> None:
        super().__init__(root=root, **kwargs)
        if decode not in ("cpu", "device"):
            raise ZooError(f"decode must be 'cpu' (in the loader's workers) or 'device' (on the training device), "
                           f"got {decode!r}")
        self.load_size, self.train_dir, self.test_dir, self.decode = load_size, train_dir, test_dir, decode
        self.image_shape = (3, load_size, load_size)  # decoded as RGB, resized and centre-cropped to load_size
        self.unreadable = UnreadableFiles(skip_unreadable, "--data.skip_unreadable true")

    def _device_decoded(self, data: Dataset) -> bool:
        """Whether ``data``'s batches leave the workers as file bytes, decoded on the device."""
        return self.decode == "device" and data is self._splits.get("pretrain")

    def _images(self, folder, split: str) -> Dataset:
        if self.decode == "device" and split == "pretrain":
            from training.pretrain.device_decode import EncodedFolder

            return EncodedFolder(folder)
        return _ResizedFolder(folder, self.load_size)

    def _loading(self, data: Dataset) -> dict:
        loading = super()._loading(data)
        if self._device_decoded(data):
            from training.pretrain.device_decode import collate_encoded

            loading["collate_fn"] = collate_encoded
        else:
            loading["collate_fn"] = collate_readable
        return loading

    def _receive(self, data: Dataset, keep_size: bool) -> Optional[Callable[[Any], Any]]:
        if self._device_decoded(data):  # settled after decoding, in transfer_batch_to_device
            return None
        return functools.partial(self.unreadable.settle, keep_size=keep_size)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        if self.decode == "device" and isinstance(batch, (tuple, list)) and isinstance(batch[0], list):
            from training.pretrain.device_decode import decode_files

            data, labels, paths = batch
            images, unreadable = decode_files(data, self.load_size, device, paths)
            bad = {place for place, _, _ in unreadable}
            readable = torch.tensor([place for place in range(len(data)) if place not in bad], dtype=torch.long)
            images, labels = self.unreadable.settle(FolderBatch(images, labels[readable], unreadable, len(data)),
                                                    keep_size=True)
            return images, labels.to(device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def teardown(self, stage: str) -> None:
        """At the end of a run: the line counting and naming the files skipped as unreadable, if any."""
        summary = self.unreadable.summary()
        if summary:
            print(summary, file=sys.stderr, flush=True)

    def load_split(self, split: str) -> Dataset:
        from torchvision.datasets import ImageFolder

        folder = Path(self.root or "").expanduser() / (self.test_dir if split == "test" else self.train_dir)
        if not folder.is_dir():
            raise ZooError(f"image folder {folder} does not exist")
        try:
            data = ImageFolder(str(folder))
        except (FileNotFoundError, RuntimeError) as err:
            raise ZooError(f"image folder {folder} has no class folders with images: {err}") from None
        self.num_classes = len(data.classes)
        return self._images(data, split)


class SplitFolderDataModule(ImageFolderDataModule):
    """One folder of class folders (``root/<class>/<image>``) split into train and test by a seeded permutation:
    ``test_fraction`` of the images are the test split, the rest the labelled training split."""

    def __init__(self, root: str = "", load_size: int = 256, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(root=root, load_size=load_size, **kwargs)
        if not 0 < test_fraction < 1:
            raise ZooError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.test_fraction = test_fraction

    def load_split(self, split: str) -> Dataset:
        from torchvision.datasets import ImageFolder

        folder = Path(self.root or "").expanduser()
        try:
            data = ImageFolder(str(folder))
        except (FileNotFoundError, RuntimeError) as err:
            raise ZooError(f"image folder {folder} has no class folders with images: {err}") from None
        self.num_classes = len(data.classes)
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed)).tolist()
        n_test = max(1, int(len(data) * self.test_fraction))
        if len(data) - n_test < 2:
            raise ZooError(f"image folder {folder} has {len(data)} images: too few to split into train and test")
        keep = perm[:n_test] if split == "test" else perm[n_test:]
        return torch.utils.data.Subset(self._images(data, split), keep)
