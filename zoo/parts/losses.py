"""Characteristic (5): losses. They receive similarity scores, never raw features.

"All of these approaches (except BYOL) have converged on using an NCE loss. The NCE loss has two parts, a
numerator, and denominator. The numerator encourages similar vectors close together and the denominator pushes
all other vectors far apart" (Falcon & Cho, arXiv:2009.00104). Here: ``nce`` (InfoNCE, with AMDIM's several
positives), BYOL's ``regression`` and SwAV's ``swapped_prediction``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import ZooError
from zoo.part_registry import PartRegistry
from zoo.parts.extract.base import Comparison
from zoo.parts.similarity import tanh_clip

LOSSES: PartRegistry[nn.Module] = PartRegistry("loss")


@LOSSES.register("nce")
class NCELoss(nn.Module):
    """InfoNCE: ``-log(exp(s_pos) / sum_j exp(s_j))`` over each anchor's row of scores.

    The row holds the anchor's score with every candidate; ``comparison.positives`` says which candidate is the
    positive, ``comparison.exclude`` which candidates, (N,) or (N, E), leave the denominator (the anchor itself in
    NT-Xent). With (N, P) positives each positive p gives ``-log(exp(s_p) / (exp(s_p) + sum_negatives exp(s_n)))``,
    averaged.

    AMDIM's two guards for unnormalised dot products: ``tanh_clip`` softly clips the scores to (-c, c), as
    ``c * tanh(s / c)``, before the softmax, and ``score_penalty`` adds ``penalty * mean(s^2)`` over every raw
    score, before the clip. Both live here, in the loss: AMDIM's released cost (amdim-public costs.py,
    ``NCE_MI_MULTI._model_scores``: a 5e-2 mean-square penalty on the raw scores, then the tanh clip at 20) and
    pl_bolts' ``AmdimNCELoss`` penalise the scores before clipping them, and a clip in the similarity part would
    hide every score beyond c from the penalty.
    """

    def __init__(self, *, score_penalty: float = 0.0, tanh_clip: Optional[float] = None) -> None:
        super().__init__()
        if score_penalty < 0 or (tanh_clip is not None and tanh_clip <= 0):
            raise ZooError(f"nce needs score_penalty >= 0 and tanh_clip > 0, got {score_penalty}, {tanh_clip}")
        self.score_penalty, self.clip = score_penalty, tanh_clip

    def forward(self, scores: Tensor, comparison: Comparison) -> Tensor:
        raw = scores.float()
        logits = tanh_clip(raw, self.clip)
        positives = comparison.positives
        if positives is None:
            raise ZooError("the nce loss needs comparisons with positives")
        if comparison.exclude is not None:
            exclude = comparison.exclude if comparison.exclude.dim() == 2 else comparison.exclude.unsqueeze(1)
            logits = logits.scatter(1, exclude, float("-inf"))
        if positives.dim() == 1:
            loss = F.cross_entropy(logits, positives)
        else:
            # several positives per anchor: each one against the anchor's shared negatives (AMDIM)
            is_pos = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, positives, True)
            neg_lse = logits.masked_fill(is_pos, float("-inf")).logsumexp(dim=1, keepdim=True)
            loss = F.softplus(neg_lse - logits.gather(1, positives)).mean()
        if self.score_penalty:
            loss = loss + self.score_penalty * raw.pow(2).mean()
        return loss


@LOSSES.register("regression")
class RegressionLoss(nn.Module):
    """BYOL's loss ||q̄ − z̄'||² = 2 − 2 · <q, z'> / (||q|| · ||z'||) for unit q̄, z̄', averaged over anchors.

    It reads each anchor's score with its positive from the similarity part's scores, so pair it with cosine
    similarity at temperature 1.0; it never normalises or takes dot products itself.
    """

    def forward(self, scores: Tensor, comparison: Comparison) -> Tensor:
        positives = comparison.positives
        if positives is None:
            raise ZooError("the regression loss needs comparisons with positives")
        index = positives if positives.dim() == 2 else positives.unsqueeze(1)
        return (2.0 - 2.0 * scores.float().gather(1, index)).mean()


@LOSSES.register("swapped_prediction")
class SwappedPredictionLoss(nn.Module):
    """SwAV's swapped prediction: ``-sum_k q_k log softmax(scores)_k``, averaged over anchors.

    ``scores`` are the similarity part's anchor-vs-prototype scores (z . c / temperature); ``comparison.targets``
    are the codes of another view of the same samples.
    """

    def forward(self, scores: Tensor, comparison: Comparison) -> Tensor:
        targets = comparison.targets
        if targets is None:
            raise ZooError("the swapped_prediction loss needs comparisons with targets (codes), e.g. from the "
                           "'prototypes' extraction")
        if targets.shape != scores.shape:
            raise ZooError(f"targets {tuple(targets.shape)} do not match scores {tuple(scores.shape)}")
        return -(targets.float() * F.log_softmax(scores.float(), dim=1)).sum(dim=1).mean()
