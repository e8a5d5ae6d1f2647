"""Write Fashion-MNIST images as an ImageFolder tree of RGB PNGs of another size (to show that
``python -m training evaluate`` takes any image folder unchanged).

``python bench/fmnist_png_folder.py OUT [--per-class 300] [--size 48]`` writes OUT/train/<class>/*.png from the
training images and OUT/test/<class>/*.png from the test images (a seeded choice of ``--per-class`` per class, a
third of that for test), resized with bilinear filtering and converted to RGB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from training.pretrain.data import FashionMNISTDataModule

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def write_split(data, out: Path, per_class: int, size: int, seed: int) -> int:
    g = torch.Generator().manual_seed(seed)
    written = 0
    for c, name in enumerate(CLASSES):
        idx = (data.labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)[:per_class]]
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in idx.tolist():
            image = Image.fromarray(data.images[i, 0].numpy(), mode="L").resize((size, size), Image.BILINEAR)
            image.convert("RGB").save(out / name / f"{i}.png")
            written += 1
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--size", type=int, default=48)
    args = parser.parse_args()
    dm = FashionMNISTDataModule()
    n_train = write_split(dm.split("train"), Path(args.out) / "train", args.per_class, args.size, seed=0)
    n_test = write_split(dm.split("test"), Path(args.out) / "test", max(1, args.per_class // 3), args.size, seed=1)
    print(f"{n_train} training and {n_test} test PNGs ({args.size}x{args.size} RGB) under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
