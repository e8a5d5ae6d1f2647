"""Momentum teachers: MoCo v2's key encoder with a queue of negatives, BYOL's target network and its loss.

In Falcon & Cho's terms both are representation-extraction strategies: MoCo compares a query from the online
encoder with keys from a slowly moving copy of it and draws its negatives from a queue of past keys; BYOL has no
negatives and regresses the moving copy's projection ("All of these approaches (except BYOL) have converged on
using an NCE loss"). Both teachers are frozen copies of the online encoder (and head) owned by the extractor, so
checkpoints save and restore them; the online encoder itself is passed in and never owned here.
"""

from __future__ import annotations

import copy
import math
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.distributed import gather
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract import EXTRACTORS, Comparison, ProjectionHead
from zoo.parts.losses import LOSSES


class EMATeacher(nn.Module):
    """Frozen deep copies of ``online`` modules, updated as ``p_t <- m * p_t + (1 - m) * p_online``.

    MoCo: "θk ← mθk + (1 − m)θq"; BYOL: "ξ ← τξ + (1 − τ)θ". Buffers (batch-norm statistics) are copied from
    the online modules at each update. ``teacher[i]`` is the copy of ``online[i]``.
    """

    def __init__(self, *online: nn.Module) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(m) for m in online)
        self.copies.requires_grad_(False)

    def __getitem__(self, index: int) -> nn.Module:
        return self.copies[index]

    @torch.no_grad()
    def update(self, online: Sequence[nn.Module], momentum: float) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ZooError(f"EMA momentum must be in [0, 1], got {momentum}")
        if len(online) != len(self.copies):
            raise ZooError(f"EMA teacher holds {len(self.copies)} module(s) but got {len(online)} online ones")
        for teacher, student in zip(self.copies, online):
            pairs = list(_pairs(teacher.named_parameters(), student.named_parameters()))
            if pairs:  # one multi-tensor kernel per op instead of two small ops per parameter
                targets = [t for (_, t), _ in pairs]
                torch._foreach_mul_(targets, momentum)
                torch._foreach_add_(targets, [s.detach().to(t.dtype) for (_, t), (_, s) in pairs],
                                    alpha=1.0 - momentum)
            for (_, t), (_, s) in _pairs(teacher.named_buffers(), student.named_buffers()):
                t.copy_(s)


def _pairs(teacher, student):
    teacher, student = list(teacher), list(student)
    if [n for n, _ in teacher] != [n for n, _ in student]:
        raise ZooError("the EMA teacher no longer matches the online modules (different parameter names)")
    return zip(teacher, student)


def byol_tau(progress: float, base: float = 0.996) -> float:
    """BYOL's target decay: "τ = 1 − (1 − τbase) · (cos(πk/K) + 1)/2", k/K being ``progress`` in [0, 1]."""
    if not 0.0 <= base <= 1.0:
        raise ZooError(f"base_tau must be in [0, 1], got {base}")
    progress = min(1.0, max(0.0, float(progress)))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class KeyQueue(nn.Module):
    """FIFO queue of L2-normalised keys: buffers ``keys`` (size, dim) and ``ptr`` (next slot to overwrite).

    MoCo: "The current mini-batch is enqueued to the dictionary, and the oldest mini-batch in the queue is
    removed"; it starts from random unit vectors. Pushes wrap around the end, so the queue stays FIFO for any
    batch size.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ZooError(f"queue needs size >= 1 and dim >= 1, got {size}, {dim}")
        self.size = size
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def check_batch_size(self, keys_per_step: int, detail: str = "") -> None:
        if keys_per_step < 1 or self.size % keys_per_step:
            raise ZooError(f"queue size {self.size} is not divisible by the global batch {keys_per_step}{detail}; "
                           f"set queue_size to a multiple of it, as MoCo does (65536 = 256 x 256)")

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        keys = F.normalize(keys.detach()[-self.size:].to(self.keys.dtype), dim=1)
        slots = (self.ptr + torch.arange(len(keys), device=keys.device)) % self.size
        self.keys[slots] = keys
        self.ptr.copy_((self.ptr + len(keys)) % self.size)


def _mlp(in_features: int, hidden: Optional[int], out: int, bn: bool) -> nn.Module:
    if not hidden:
        return nn.Linear(in_features, out)
    if bn:
        return ProjectionHead(in_features, hidden, out)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


def _two_views(name: str, views: Sequence[Tensor]) -> None:
    if len(views) != 2:
        raise ZooError(f"{name} compares exactly 2 views, got {len(views)}; use an augmentation with 2 views")


@EXTRACTORS.register("momentum_queue")
class MomentumQueueExtractor(nn.Module):
    """MoCo v2 (Chen et al., arXiv:2003.04297): queries from the online encoder, keys from its momentum copy.

    MoCo (arXiv:1911.05722): "we maintain the dictionary as a queue of data samples", the loss sums "over one
    positive and K negative samples", and the key encoder is "a momentum-based moving average of the query
    encoder" (m = 0.999). MoCo v2 replaces "the fc head in MoCo with a 2-layer MLP head (hidden layer 2048-d,
    with ReLU)": no batch norm, ``head_bn=False``; ``head_hidden=None`` gives MoCo v1's linear head.
    q and k are pooled last maps through the head, L2-normalised. Each anchor q_i is scored against
    [k_1..k_N, queue]; the other in-batch keys are excluded, so its negatives are the queue only, as in the
    paper. The (gathered, global) keys are enqueued after the comparison is built. ``symmetric=True`` adds
    q2 vs k1 (weights 0.5 each) and enqueues both key sets; the paper's MoCo v2 is not symmetric.
    Not implemented: MoCo's shuffling BN, which only acts across several GPUs.
    """

    def __init__(self, *, encoder: Encoder, head_hidden: Optional[int] = 2048, head_out: int = 128,
                 head_bn: bool = False, queue_size: int = 65536, momentum: float = 0.999,
                 symmetric: bool = False) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ZooError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum, self.symmetric = momentum, symmetric
        self.head = _mlp(encoder.num_features, head_hidden, head_out, head_bn)
        self.teacher = EMATeacher(encoder, self.head)
        self.queue = KeyQueue(queue_size, head_out)

    def _query(self, encoder: Encoder, view: Tensor) -> Tensor:
        return F.normalize(self.head(encoder(view)), dim=1)

    @torch.no_grad()
    def _key(self, view: Tensor) -> Tensor:
        return F.normalize(self.teacher[1](self.teacher[0](view)), dim=1)

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        _two_views("momentum_queue", views)
        pairs = [(0, 1), (1, 0)] if self.symmetric else [(0, 1)]
        queue = self.queue.keys.detach()
        comparisons, keys = [], []
        for qi, ki in pairs:
            q, k = self._query(encoder, views[qi]), self._key(views[ki])
            n = q.shape[0]
            positives = torch.arange(n, device=q.device)
            others = positives.expand(n, n)[~torch.eye(n, dtype=torch.bool, device=q.device)].view(n, n - 1)
            # torch.cat copies the queue, so the enqueue below cannot change this step's candidates
            candidates = torch.cat([k, queue.to(k.dtype)])
            comparisons.append(Comparison(q, candidates, positives=positives, exclude=others,
                                          weight=1.0 / len(pairs)))
            keys.append(k)
        if self.training:
            self.queue.push(gather(torch.cat(keys)))
        return comparisons

    def check_batch_size(self, global_batch: int) -> None:
        per = 2 if self.symmetric else 1
        detail = f" ({global_batch} samples x 2 keys, symmetric)" if self.symmetric else ""
        self.queue.check_batch_size(global_batch * per, detail)

    def after_optimizer_step(self, encoder: Encoder, progress: float) -> None:
        self.teacher.update([encoder, self.head], self.momentum)


@EXTRACTORS.register("momentum_predictor")
class MomentumPredictorExtractor(nn.Module):
    """BYOL (Grill et al., arXiv:2006.07733): an online predictor regresses the target network's projection.

    BYOL: "we train the online network to predict the target network representation of the same image under a
    different augmented view"; "the target network parameters ξ are an exponential moving average of the online
    parameters θ", with τ from ``byol_tau`` (τbase = 0.996). Projector and predictor are "a linear layer with
    output size 4096 followed by batch normalization [...], rectified linear units (ReLU) [...], and a final linear
    layer with output dimension 256". Symmetric: (p1 vs z'2) and (p2 vs z'1), each weight 1.0 since the paper
    sums the two terms, L^BYOL = L + L~. Vectors are L2-normalised here; each view runs through the networks on its own.
    """

    def __init__(self, *, encoder: Encoder, projector_hidden: int = 4096, projector_out: int = 256,
                 predictor_hidden: int = 4096, base_tau: float = 0.996) -> None:
        super().__init__()
        byol_tau(0.0, base_tau)  # validates base_tau
        self.base_tau, self.last_tau = base_tau, base_tau
        self.projector = ProjectionHead(encoder.num_features, projector_hidden, projector_out)
        self.predictor = ProjectionHead(projector_out, predictor_hidden, projector_out)
        self.teacher = EMATeacher(encoder, self.projector)

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        _two_views("momentum_predictor", views)
        p = [F.normalize(self.predictor(self.projector(encoder(v))), dim=1) for v in views]
        with torch.no_grad():
            z = [F.normalize(self.teacher[1](self.teacher[0](v)), dim=1) for v in views]
        positives = torch.arange(p[0].shape[0], device=p[0].device)
        return [Comparison(p[0], z[1], positives=positives, weight=1.0),
                Comparison(p[1], z[0], positives=positives, weight=1.0)]

    def after_optimizer_step(self, encoder: Encoder, progress: float) -> None:
        self.last_tau = byol_tau(progress, self.base_tau)
        self.teacher.update([encoder, self.projector], self.last_tau)


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
