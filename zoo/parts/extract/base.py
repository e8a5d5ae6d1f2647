"""What every representation-extraction strategy shares: the ``Comparison`` record, the ``Extractor`` contract,
the one MLP head builder and the one view-count check.

"The third way to characterize these methods is by the strategy they employ to extract representations. This is
arguably where the 'magic' happens in all of these methods and where they differ the most" (Falcon & Cho,
arXiv:2009.00104). An extractor runs the encoder on the views and returns ``Comparison`` records: which vectors
are anchors, which are candidates, and where each anchor's positive is. The similarity and the loss do the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch.nn as nn
from torch import Tensor

from zoo.errors import ZooError
from zoo.part_registry import PartRegistry
from zoo.parts.encoders.base import Encoder

#: every extraction strategy, registered by name where it is defined (each module of this package)
EXTRACTORS: PartRegistry["Extractor"] = PartRegistry("extraction")


@dataclass
class Comparison:
    """Anchors (N, D) scored against candidates (M, D) by the similarity part, then judged by the loss.

    ``positives``: (N,) index of each anchor's positive candidate, or (N, P) when an anchor has P positives
    (AMDIM's global-to-local task), each then contrasted on its own against the shared negatives.
    ``exclude``: optional (N,) or (N, E) candidates to drop from anchor i's denominator (itself, in NT-Xent).
    ``targets``: optional (N, M) soft targets over the candidates (SwAV's codes), for target-based losses.
    ``weight``: this comparison's share of the total loss.
    """

    anchors: Tensor
    candidates: Tensor
    positives: Optional[Tensor] = None
    exclude: Optional[Tensor] = None
    targets: Optional[Tensor] = None
    weight: float = 1.0


class Extractor(nn.Module):
    """Base class of every extraction strategy: ``forward(encoder, views) -> comparisons`` plus three hooks.

    The training loop calls the hooks on every extractor; here they do nothing, and a strategy overrides those it
    needs (a queue that must hold whole global batches, prototypes frozen for a while, a momentum teacher).
    The encoder is passed in, never owned: the extractor owns only its own heads, teachers and queues. A strategy
    registered in ``EXTRACTORS`` must subclass this (``zoo.build.build_method`` checks).
    """

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        """Encode the views and return the comparisons the similarity and the loss will score."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(encoder, views)")

    def check_batch_size(self, global_batch: int) -> None:
        """Called once before training with batch_size x processes; raise ZooError if it cannot work. No-op."""

    def before_optimizer_step(self, epoch: int) -> None:
        """Called after the backward pass, before every optimizer step, with the current epoch. No-op."""

    def after_optimizer_step(self, encoder: Encoder, progress: float) -> None:
        """Called after every optimizer step with the training progress in [0, 1] (e.g. an EMA update). No-op."""


class ProjectionHead(nn.Sequential):
    """MLP head: (Linear -> BatchNorm -> ReLU) x (layers - 1) -> Linear, as SimCLR's g(.).

    SimCLR (Chen et al., arXiv:2002.05709): "a small neural network projection head g(·) that maps representations
    to the space where contrastive loss is applied". ``batch_norm=False`` gives (Linear with bias -> ReLU) blocks,
    MoCo v2's "2-layer MLP head (hidden layer 2048-d, with ReLU)". The one head builder of every extractor.

    ``output_batch_norm=True`` ends the head as SimCLR's released code does (``model_util.projection_head``: the
    final layer is ``linear_layer(..., use_bias=False, use_bn=True)``, its batch norm with ``center=False``): a
    Linear without bias, then a batch norm that scales but does not shift (its shift is held at zero and not
    trained). BYOL's and MoCo's heads end on a plain Linear, the default.
    """

    def __init__(self, in_features: int, hidden: int, out: int, layers: int = 2, batch_norm: bool = True,
                 output_batch_norm: bool = False) -> None:
        if layers < 1 or min(in_features, hidden, out) < 1:
            raise ZooError(f"projection head needs layers >= 1 and positive sizes, got {layers}, {hidden}, {out}")
        modules: List[nn.Module] = []
        width = in_features
        for _ in range(layers - 1):
            if batch_norm:
                modules += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            else:
                modules += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        if output_batch_norm:
            norm = nn.BatchNorm1d(out)
            norm.bias.requires_grad_(False)  # center=False: scale only; the zero shift stays in checkpoints
            modules += [nn.Linear(width, out, bias=False), norm]
        else:
            modules.append(nn.Linear(width, out))
        super().__init__(*modules)


def check_views(name: str, views: Sequence[object], *, exactly: Optional[int] = None, at_least: int = 1,
                hint: str = "") -> None:
    """Raise ZooError unless there are ``exactly`` views (when given) and at least ``at_least`` of them."""
    n = len(views)
    if exactly is not None and n != exactly:
        raise ZooError(f"{name} compares exactly {exactly} views, got {n}{hint}")
    if n < at_least:
        raise ZooError(f"{name} needs at least {at_least} view{'s' if at_least != 1 else ''}, got {n}{hint}")
