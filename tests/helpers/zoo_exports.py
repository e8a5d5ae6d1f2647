"""Exported folders made without training: a tiny encoder with seeded random weights, exported for real."""

from pathlib import Path

import torch

from tests.helpers.tiny import TINY
from training.release.export import export_checkpoint
from zoo.build import build_encoder
from zoo.methods import resolve_method


def make_checkpoint(path: Path, seed: int = 0, method: str = "yadim") -> Path:
    """A Lightning-format checkpoint at ``path`` holding a seeded tiny encoder of ``method`` (TINY settings)."""
    torch.manual_seed(seed)
    encoder = build_encoder(resolve_method(method, **TINY[method]).encoder)
    ckpt = {"state_dict": {f"encoder.{k}": v for k, v in encoder.state_dict().items()},
            "hyper_parameters": {"method": method, **TINY[method]}, "epoch": 0, "global_step": 0}
    torch.save(ckpt, path)
    return Path(path)


def make_export(out: Path, seed: int = 0, name: str = "yadim.tiny", method: str = "yadim") -> Path:
    """A Lightning-format checkpoint holding a seeded tiny encoder, exported with ``export_checkpoint``."""
    path = make_checkpoint(Path(out).parent / f"{Path(out).name}.seed{seed}.ckpt", seed, method)
    return Path(export_checkpoint(ckpt=str(path), out=str(out), name=name, dataset="fashion_mnist", overwrite=True,
                                  metrics={"fashion_mnist/knn": 0.5 + seed / 100}))


def outputs(encoder, seed: int = 0) -> torch.Tensor:
    import zoo

    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return encoder(zoo.eval_transform(encoder)(images))
