"""Check every configuration of a grid before any cell trains: its five parts build and score a synthetic batch.

A cell that would fail at its first step (an unknown part, a wrong keyword argument, an extraction the
augmentation's views do not suit, a queue the batch does not divide) is refused here, with one line naming the
grid, the configuration and the reason, instead of after an hour of other cells. The check builds the parts with
``zoo.build.build_method`` as ``ContrastiveModule`` does, then runs views -> encoder -> extraction -> similarity ->
loss on a few random images of the datamodule's shape, without gradients.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Optional, Tuple

import torch

from training.explore.grid import Config, Grid
from zoo.build import build_method
from zoo.errors import ZooError, first_line
from zoo.methods import resolve_method
from zoo.spec import CHARACTERISTICS

#: images in the synthetic batch: enough for every contrastive pairing, small enough to take milliseconds
SYNTHETIC_BATCH = 8


def data_class(grid: Grid):
    """The recipe's datamodule class (``data.class_path``)."""
    path = str((grid.recipe_data.get("data") or {}).get("class_path", ""))
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ZooError(f"grid {grid.name}: recipe {grid.recipe} names no importable data.class_path ({path!r})") \
            from None


def batch_size(grid: Grid) -> int:
    """The training batch size of every cell: the grid's fit option, else the recipe's."""
    given = grid.fit.get("data.init_args.batch_size")
    if given is None:
        given = ((grid.recipe_data.get("data") or {}).get("init_args") or {}).get("batch_size", 256)
    return int(given)


def where(grid: Grid, config: Config) -> str:
    """The grid-file position of a configuration's first non-base choice (``axes.similarity[1]``), else ``base``."""
    for axis, index in config.choices:
        if index:
            return f"axes.{axis}[{index - 1}]"
    return "base"


def check_config(grid: Grid, config: Config, image_shape: Optional[Tuple[int, int, int]]) -> None:
    overrides: Dict[str, Any] = {c: config.mapping(c) for c in CHARACTERISTICS}
    method = resolve_method(grid.method, **overrides)
    parts = build_method(method)
    parts.extract.check_batch_size(batch_size(grid))
    if image_shape is None:  # an image folder: its shape is known only once loaded; building is the check
        return
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (SYNTHETIC_BATCH, *image_shape), dtype=torch.uint8, generator=generator)
    with torch.no_grad():
        comparisons = parts.extract(parts.encoder, parts.augment(images))
        loss = sum(c.weight * parts.loss(parts.similarity(c.anchors, c.candidates), c) for c in comparisons)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ZooError(f"the loss of a synthetic batch is not a scalar ({type(loss).__name__})")


def validate(grid: Grid) -> int:
    """Raise one ``ZooError`` line for the first configuration that does not build and score; else the count."""
    shape = getattr(data_class(grid), "image_shape", None)
    for config in grid.configs:
        try:
            check_config(grid, config, shape)
        except Exception as err:  # any failure here would have failed the cell at its first step
            raise ZooError(f"grid {grid.path}: {where(grid, config)}: {first_line(err)}") from None
    return len(grid.configs)
