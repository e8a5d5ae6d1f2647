"""Characteristic (2): encoders.

"The second way we characterize these methods is by the choice of encoder. Most of the approaches above use
ResNets of various widths and depths" and "wider encoders perform much better in contrastive learning"
(Falcon & Cho). Every encoder here exposes named feature maps, so representation extraction can pick which
ones to compare, and a plain ``forward`` giving the pooled last map, (B, num_features), for downstream use.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch.nn as nn
from torch import Tensor

from zoo.errors import ZooError
from zoo.part_registry import PartRegistry

ENCODERS: PartRegistry["Encoder"] = PartRegistry("encoder")


class Encoder(nn.Module):
    """Base class: subclasses set the attributes below and implement ``_maps``."""

    in_channels: int
    num_features: int
    map_names: Tuple[str, ...]  # shallow to deep; the last is the default representation
    input_size: Optional[Tuple[int, int]] = None  # fixed input size, or None for any size >= min_size
    min_size: int = 1
    # set by zoo.load_encoder on the encoders it returns: the exported config and where the files came from
    zoo_config: Dict[str, Any]
    zoo_source: Dict[str, Any]

    def check_input(self, x: Tensor) -> None:
        if not hasattr(x, "dim") or x.dim() != 4:
            raise ZooError(f"{type(self).__name__} expects a batch (B, C, H, W), got shape "
                           f"{tuple(getattr(x, 'shape', ()))}")
        if x.shape[1] != self.in_channels:
            raise ZooError(f"{type(self).__name__} expects {self.in_channels} input channel(s), got {x.shape[1]}")
        if self.input_size is not None and tuple(x.shape[2:]) != tuple(self.input_size):
            raise ZooError(f"{type(self).__name__} expects {self.input_size[0]}x{self.input_size[1]} inputs, "
                           f"got {x.shape[2]}x{x.shape[3]}; resize with the entry's eval transform")
        if min(x.shape[2:]) < self.min_size:
            raise ZooError(f"{type(self).__name__} needs inputs of at least {self.min_size}px, "
                           f"got {x.shape[2]}x{x.shape[3]}")

    def forward_features(self, x: Tensor, maps: Optional[Sequence[str]] = None) -> Dict[str, Tensor]:
        """Named feature maps (B, C, h, w); ``maps`` selects which (default: the last one)."""
        self.check_input(x)
        wanted = tuple(maps) if maps else (self.map_names[-1],)
        unknown = [m for m in wanted if m not in self.map_names]
        if unknown:
            raise ZooError(f"{type(self).__name__} has no feature map(s) {unknown}; it has {list(self.map_names)}")
        return self._maps(x, wanted)

    def _maps(self, x: Tensor, wanted: Tuple[str, ...]) -> Dict[str, Tensor]:
        raise NotImplementedError

    def _run_stages(self, x: Tensor, wanted: Tuple[str, ...]) -> Dict[str, Tensor]:
        """Apply the stages named ``map_names`` in order, keeping the wanted maps; stop after the last one."""
        out: Dict[str, Tensor] = {}
        for name in self.map_names:
            x = getattr(self, name)(x)
            if name in wanted:
                out[name] = x
            if len(out) == len(wanted):
                break
        return out

    def forward(self, x: Tensor) -> Tensor:
        """The representation used downstream: the last feature map, average pooled, (B, num_features).

        A patch grid (B, rows, cols, C, p, p), as CPC's evaluation uses, is encoded patch by patch and the
        patch features are averaged over the grid.
        """
        if x.dim() == 6:
            b, rows, cols = x.shape[:3]
            return self.forward(x.flatten(0, 2)).view(b, rows * cols, -1).mean(1)
        last = self.forward_features(x)[self.map_names[-1]]
        return last.mean(dim=(2, 3)) if last.dim() == 4 else last
