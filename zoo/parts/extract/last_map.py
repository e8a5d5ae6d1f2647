"""Last-map extraction (YADIM, SimCLR): one feature map of every view, pooled, optionally through a projection head.

Falcon & Cho (arXiv:2009.00104) on YADIM: "Encode the multiple versions of an image and use the last feature map
to make a comparison"; SimCLR (Chen et al., arXiv:2002.05709) runs the same pooled map "through a projection head"
before NT-Xent, which contrasts each view against every other vector of the (global) batch.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.distributed import gather_with_grad, world
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract.base import EXTRACTORS, Comparison, Extractor, ProjectionHead


def pair_views(z: Tensor, n_views: int, pairing: str) -> List[Comparison]:
    """Comparisons between V views of N samples, ``z`` being (V*N, D) in view-major order.

    ``all_views`` (NT-Xent): every vector is an anchor against all V*N vectors but itself; for V=2 its positive
    is the other view of the same sample. ``cross_view``: view a's vectors against view b's only, both ways.
    Under DDP the candidates are gathered from every process (negatives of the global batch) and the anchors
    stay local; positives are indexed into the gathered candidates.
    """
    n = z.shape[0] // n_views
    rank, size = world()
    if pairing == "all_views":
        if n_views != 2:
            raise ZooError("pairing 'all_views' needs exactly 2 views")
        local = torch.arange(2 * n, device=z.device)
        own = local + rank * 2 * n  # this process's rows inside the gathered candidates
        return [Comparison(z, gather_with_grad(z), positives=(local + n) % (2 * n) + rank * 2 * n, exclude=own)]
    if pairing == "cross_view":
        views = z.split(n)
        idx = torch.arange(n, device=z.device) + rank * n
        pairs = [(a, b) for a in range(n_views) for b in range(n_views) if a != b]
        return [Comparison(views[a], gather_with_grad(views[b]), positives=idx, weight=1.0 / len(pairs))
                for a, b in pairs]
    raise ZooError(f"unknown pairing {pairing!r}; use 'all_views' or 'cross_view'")


@EXTRACTORS.register("last_map")
class LastMapExtractor(Extractor):
    """One feature map of every view, pooled to a vector, optionally through an MLP projection head.

    YADIM: "Encode the multiple versions of an image and use the last feature map to make a comparison. There is
    no projection head" (``head_hidden=None``). SimCLR: the same map "run through a projection head"
    (``head_hidden``/``head_out``; ``head_output_batch_norm`` ends it on SimCLR's scale-only batch norm, see
    ``ProjectionHead``). ``feature_map=None`` takes the encoder's last map.
    """

    def __init__(self, *, encoder: Encoder, feature_map: Optional[str] = None, pairing: str = "all_views",
                 head_hidden: Optional[int] = None, head_out: int = 128, head_layers: int = 2,
                 head_output_batch_norm: bool = False) -> None:
        super().__init__()
        self.feature_map = feature_map or encoder.map_names[-1]
        if self.feature_map not in encoder.map_names:
            raise ZooError(f"feature map {self.feature_map!r} is not one of the encoder's {list(encoder.map_names)}")
        if pairing not in ("all_views", "cross_view"):
            raise ZooError(f"unknown pairing {pairing!r}; use 'all_views' or 'cross_view'")
        self.pairing = pairing
        channels = _map_channels(encoder, self.feature_map)
        if head_output_batch_norm and not head_hidden:
            raise ZooError("head_output_batch_norm needs a projection head (set head_hidden)")
        self.head = (ProjectionHead(channels, head_hidden, head_out, head_layers,
                                    output_batch_norm=head_output_batch_norm) if head_hidden else nn.Identity())

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        shapes = {tuple(v.shape[1:]) for v in views}
        if len(shapes) != 1:
            raise ZooError(f"last_map needs views of one shape, got {sorted(shapes)}")
        fmap = encoder.forward_features(torch.cat(list(views)), (self.feature_map,))[self.feature_map]
        z = self.head(fmap.mean(dim=(2, 3)))
        return pair_views(z, len(views), self.pairing)


def _map_channels(encoder: Encoder, name: str) -> int:
    if name == encoder.map_names[-1]:
        return encoder.num_features
    size = encoder.input_size or (64, 64)
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        probe = torch.zeros(1, encoder.in_channels, *size)
        channels = encoder.forward_features(probe, (name,))[name].shape[1]
    encoder.train(was_training)
    return channels
