"""Characteristic (4): similarity measures.

"All of the approaches above use a dot product or cosine similarity. [...] our experiments show that the choice
of similarity is largely inconsequential" (Falcon & Cho). A similarity maps anchors (N, D) and candidates
(M, D) to scores (N, M); losses only ever see these scores.

Scores are computed in float32 even inside a bf16/fp16 autocast region: at temperature 0.1 they reach 10, where
bf16's 8-bit mantissa rounds by up to 0.03, enough to shift NT-Xent's gradient on the embeddings by about 1%
(``bench/similarity_precision.py``). The product is (N, D) x (D, M), small beside the encoder.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import ZooError
from zoo.part_registry import PartRegistry

SIMILARITIES: PartRegistry[nn.Module] = PartRegistry("similarity")


def float32_scores(anchors: Tensor, candidates: Tensor) -> Tensor:
    """``anchors @ candidates.T`` in float32, autocast switched off for the product."""
    # the meta device has no autocast state (``python -m training plan`` counts a step's FLOPs there)
    device = "cpu" if anchors.device.type == "meta" else anchors.device.type
    with torch.autocast(device_type=device, enabled=False):
        return anchors.float() @ candidates.float().t()


def tanh_clip(scores: Tensor, limit: Optional[float]) -> Tensor:
    """Soft clipping to (-limit, limit), AMDIM's guard against exploding dot products."""
    return scores if limit is None else limit * torch.tanh(scores / limit)


@SIMILARITIES.register("dot")
class DotSimilarity(nn.Module):
    """Dot product ``a . b / temperature``; optionally divided by sqrt(D) and tanh-clipped.

    On vectors the extractor already keeps at unit norm it is the cosine with SwAV's gradient: SwAV's softmax is
    over "1/τ z_t^T c_k" with z normalised in the graph and the prototypes C re-normalised outside it (its code
    normalises the prototype weights under no_grad before each iteration, then applies them as a plain linear
    layer), so C's gradient keeps its radial part, which ``cosine`` would project away.

    ``tanh_clip`` clips the scores every loss then sees, penalty included. AMDIM's cost penalises the raw scores
    before its clip, so its rows leave this off and give the clip to the ``nce`` loss instead.
    """

    def __init__(self, *, temperature: float = 1.0, scale_by_sqrt_dim: bool = False,
                 tanh_clip: Optional[float] = None) -> None:
        super().__init__()
        if temperature <= 0 or (tanh_clip is not None and tanh_clip <= 0):
            raise ZooError(f"dot similarity needs temperature > 0 and tanh_clip > 0, got {temperature}, {tanh_clip}")
        self.temperature, self.scale_by_sqrt_dim, self.clip = temperature, scale_by_sqrt_dim, tanh_clip

    def forward(self, anchors: Tensor, candidates: Tensor) -> Tensor:
        scores = float32_scores(anchors, candidates) / self.temperature
        if self.scale_by_sqrt_dim:
            scores = scores / math.sqrt(anchors.shape[-1])
        return tanh_clip(scores, self.clip)


@SIMILARITIES.register("cosine")
class CosineSimilarity(nn.Module):
    """Cosine similarity divided by a temperature (SimCLR 0.1-0.5, MoCo v2 0.2, SwAV 0.1)."""

    def __init__(self, *, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ZooError(f"cosine similarity needs temperature > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, anchors: Tensor, candidates: Tensor) -> Tensor:
        unit_a, unit_c = F.normalize(anchors.float(), dim=-1), F.normalize(candidates.float(), dim=-1)
        return float32_scores(unit_a, unit_c) / self.temperature
