"""MoCo v2's extraction: queries from the online encoder, keys from its momentum copy, negatives from a queue.

In Falcon & Cho's terms (arXiv:2009.00104) this is a representation-extraction strategy: MoCo compares a query
from the online encoder with keys from a slowly moving copy of it and draws its negatives from a queue of past
keys. The teacher is a frozen copy of the online encoder and head owned by the extractor (``teacher.py``), so
checkpoints save and restore it; the online encoder itself is passed in and never owned here.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.distributed import gather
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract.base import EXTRACTORS, Comparison, Extractor, ProjectionHead, check_views
from zoo.parts.extract.teacher import EMATeacher


class KeyQueue(nn.Module):
    """FIFO queue of L2-normalised keys: buffers ``keys`` (size, dim) and ``ptr`` (next slot to overwrite).

    MoCo: "The current mini-batch is enqueued to the dictionary, and the oldest mini-batch in the queue is
    removed"; it starts from random unit vectors. Pushes wrap around the end, so the queue stays FIFO for any
    batch size.
    """

    keys: Tensor
    ptr: Tensor

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


@EXTRACTORS.register("momentum_queue")
class MomentumQueueExtractor(Extractor):
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
        self.head: nn.Module = (ProjectionHead(encoder.num_features, head_hidden, head_out, batch_norm=head_bn)
                                if head_hidden else nn.Linear(encoder.num_features, head_out))
        self.teacher = EMATeacher(encoder, self.head)
        self.queue = KeyQueue(queue_size, head_out)

    def _query(self, encoder: Encoder, view: Tensor) -> Tensor:
        return F.normalize(self.head(encoder(view)), dim=1)

    @torch.no_grad()
    def _key(self, view: Tensor) -> Tensor:
        return F.normalize(self.teacher[1](self.teacher[0](view)), dim=1)

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        check_views("momentum_queue", views, exactly=2, hint="; use an augmentation with 2 views")
        pairs = [(0, 1), (1, 0)] if self.symmetric else [(0, 1)]
        queue = self.queue.keys.detach()
        comparisons, keys = [], []
        for qi, ki in pairs:
            q, k = self._query(encoder, views[qi]), self._key(views[ki])
            n = q.shape[0]
            positives = torch.arange(n, device=q.device)
            # row i: every in-batch index but i, ascending (index arithmetic, no boolean mask: shapes stay static,
            # so ``python -m training plan`` can count this step on the meta device)
            rest = torch.arange(n - 1, device=q.device).expand(n, n - 1)
            others = rest + (rest >= positives.unsqueeze(1)).long()
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
