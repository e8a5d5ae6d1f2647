"""Golden outputs: the features each shipped encoder gives for a fixed batch, stored next to its weights.

``golden.safetensors`` in a shipped folder (``zoo/_weights/NAME/``) holds ``images``, a fixed uint8 batch
(``GOLDEN_BATCH`` images of the raw Fashion-MNIST size, drawn once from ``GOLDEN_SEED`` and stored, so the check
does not depend on any random number generator), and ``features``, what ``load_encoder(NAME)`` computes for them
after ``eval_transform(NAME)``, in float32 on the CPU. ``tests/zoo/pretrained/test_golden.py`` recomputes them and compares at
``ATOL``/``RTOL``, so any change to what a shipped encoder computes (its code, its weights, its preprocessing)
is caught. Write them with ``python -m zoo.pretrained.golden`` (all shipped entries) after shipping weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

GOLDEN = "golden.safetensors"
GOLDEN_SEED = 20090010  # arXiv:2009.00104
GOLDEN_BATCH = 4
GOLDEN_SIZE = (28, 28)
ATOL = RTOL = 1e-4


def golden_images(channels: int, seed: int = GOLDEN_SEED) -> Tensor:
    """(GOLDEN_BATCH, channels, 28, 28) uint8 images from a seeded generator (stored, so drawn only once)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (GOLDEN_BATCH, channels, *GOLDEN_SIZE), dtype=torch.uint8, generator=generator)


@torch.no_grad()
def compute_features(name: str, images: Tensor, registry: Optional[str] = None) -> Tensor:
    """What ``load_encoder(name)`` gives for ``images`` after ``eval_transform(name)``, float32 on the CPU."""
    from zoo.pretrained.api import eval_transform, load_encoder

    encoder = load_encoder(name, registry=registry)
    return encoder(eval_transform(encoder)(images)).float().cpu().contiguous()


def write_golden(name: str, folder: Path, registry: Optional[str] = None) -> Dict[str, Tensor]:
    """Compute and write ``folder/golden.safetensors`` for registry entry ``name``; returns the stored tensors."""
    from safetensors.torch import save_file

    from zoo.pretrained.weights_registry import open_registry

    entry = open_registry(registry).get(name)
    images = golden_images(int(entry.input["channels"]))
    tensors = {"images": images, "features": compute_features(name, images, registry)}
    save_file(tensors, str(Path(folder) / GOLDEN), metadata={"entry": entry.name, "seed": str(GOLDEN_SEED)})
    return tensors


def read_golden(folder: Path) -> Dict[str, Tensor]:
    """The stored ``images`` and ``features`` of a shipped folder."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / GOLDEN))


def shipped_entries(registry: Optional[str] = None) -> List[str]:
    """Names of the entries shipped inside the package (``source.kind == "package"``)."""
    from zoo.pretrained.weights_registry import open_registry

    reg = open_registry(registry)
    return [n for n, e in sorted(reg.entries.items()) if e.kind == "package"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="write golden.safetensors for shipped weights entries")
    parser.add_argument("names", nargs="*", help="entries (default: every package entry of the registry)")
    parser.add_argument("--registry", default=None, help="the weights registry (default: the package's)")
    args = parser.parse_args(argv)
    from zoo.pretrained.weights_registry import open_registry

    reg = open_registry(args.registry)
    for name in args.names or shipped_entries(args.registry):
        entry = reg.get(name)
        tensors = write_golden(entry.name, entry.package_folder(), args.registry)
        print(f"{entry.name}: features {tuple(tensors['features'].shape)} -> {entry.package_folder() / GOLDEN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
