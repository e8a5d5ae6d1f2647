"""SwAV (Caron et al., arXiv:2006.09882): prototypes + Sinkhorn-Knopp codes, the extraction half of SwAV.

SwAV uses "a 'swapped' prediction mechanism where we predict the cluster assignment of a view from the
representation of another view". In the framework's terms (Falcon & Cho), the extraction part projects every
view to a unit vector z, scores the large views against K unit-norm prototypes C and turns those scores into
soft codes q with a few Sinkhorn-Knopp iterations (equal share of the batch per prototype); it then emits one
``Comparison`` per (large view i, other view v): anchors z_v, candidates C, targets q_i. The similarity part
scores z_v against C and the ``swapped_prediction`` loss (``zoo.parts.losses``) is the cross-entropy against q_i.
The ``swav`` row uses ``dot`` / 0.1: z and C are both unit here (C re-normalised under no_grad, as SwAV's code
does), so the scores are cosines, and C gets SwAV's full gradient; ``cosine`` would normalise C again inside
the graph and drop the gradient's component along each prototype.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.distributed import gather, world
from zoo.parts.encoders.base import Encoder
from zoo.parts.extract.base import EXTRACTORS, Comparison, Extractor, ProjectionHead, check_views
from zoo.parts.similarity import float32_scores


def _all_reduce(x: Tensor, op: str = "sum") -> Tensor:
    """In-place all-reduce (``sum`` or ``max``) over processes; a no-op in a single process."""
    if world()[1] > 1:
        dist.all_reduce(x, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return x


@torch.no_grad()
def sinkhorn(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Soft codes Q (B, K) for prototype scores (B, K), SwAV's online equipartitioned assignment.

    Q = exp(scores / epsilon), seen as (K, B) and normalised to a total of 1, is rescaled alternately so that
    each prototype (row) holds 1/K of the mass and each sample (column) 1/B, ``iterations`` times; the result
    is scaled by B so that every sample's code sums to 1 (SwAV keeps these soft codes, epsilon 0.05, 3 rounds).
    Under DDP the row sums, the total and B are all-reduced, so the equipartition holds over the global batch.
    A per-prototype maximum (itself all-reduced) is subtracted before ``exp``; the first row normalisation
    cancels it exactly, so it changes nothing but the range of the exponentials.
    """
    if scores.dim() != 2:
        raise ZooError(f"sinkhorn expects scores (B, K), got shape {tuple(scores.shape)}")
    if epsilon <= 0 or iterations < 1:
        raise ZooError(f"sinkhorn needs epsilon > 0 and iterations >= 1, got {epsilon}, {iterations}")
    logits = scores.detach().float() / epsilon
    shift = _all_reduce(logits.max(dim=0, keepdim=True).values, "max")
    q = torch.exp(logits - shift).t()  # (K, B)
    n_prototypes = q.shape[0]
    n_samples = _all_reduce(torch.tensor(float(q.shape[1]), device=q.device))
    tiny = torch.finfo(q.dtype).tiny
    q /= _all_reduce(q.sum())
    for _ in range(iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True)).clamp_min(tiny)
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True).clamp_min(tiny)
        q /= n_samples
    q *= n_samples
    return q.t()


@EXTRACTORS.register("prototypes")
class PrototypeExtractor(Extractor):
    """SwAV extraction: projector MLP -> unit z -> K unit prototypes -> Sinkhorn codes of the large crops.

    Views are ``n_large`` large crops followed by any number of small ones (the ``swav`` multi-crop preset).
    Consecutive views of one size are encoded by one encoder call; the head runs once over all views, as in
    SwAV. Codes are computed without gradient and only for the large crops ("we compute codes using only the
    full resolution crops"); for each large view i and every other view v the extractor emits
    ``Comparison(z_v, C, targets=q_i, weight=1 / (n_large * (n_views - 1)))``, SwAV's average.

    The prototypes are re-normalised to unit rows outside the autograd graph at the start of every forward (SwAV's
    main_swav.py does so under no_grad before each iteration) and their gradient is dropped during the first
    ``freeze_prototypes_epochs`` epochs (``before_optimizer_step``). With ``queue_size > 0`` a FIFO queue (newest
    first) keeps the last ``queue_size`` large-crop embeddings of the global batch (per large view) from epoch
    ``queue_start_epoch`` on; once full, its scores join Sinkhorn's batch and its codes are dropped, which SwAV
    uses for small batches (3840 embeddings from epoch 15 for batches of 256). Under DDP every process holds the
    same global queue and feeds its own 1/world slice of it to Sinkhorn.
    """

    queue: Tensor  # buffers
    queue_filled: Tensor
    epoch: Tensor

    def __init__(self, *, encoder: Encoder, head_hidden: Optional[int] = 2048, head_out: int = 128,
                 head_layers: int = 2, n_prototypes: int = 3000, n_large: int = 2, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, freeze_prototypes_epochs: int = 1, queue_size: int = 0,
                 queue_start_epoch: int = 15) -> None:
        super().__init__()
        if n_prototypes < 1 or head_out < 1 or n_large < 1:
            raise ZooError(f"prototypes needs n_prototypes, head_out and n_large >= 1, got "
                           f"{n_prototypes}, {head_out}, {n_large}")
        if epsilon <= 0 or sinkhorn_iterations < 1:
            raise ZooError(f"prototypes needs epsilon > 0 and sinkhorn_iterations >= 1, got "
                           f"{epsilon}, {sinkhorn_iterations}")
        if queue_size < 0 or queue_start_epoch < 0 or freeze_prototypes_epochs < 0:
            raise ZooError(f"queue_size, queue_start_epoch and freeze_prototypes_epochs must be >= 0, got "
                           f"{queue_size}, {queue_start_epoch}, {freeze_prototypes_epochs}")
        self.n_large, self.epsilon, self.iterations = n_large, epsilon, sinkhorn_iterations
        self.freeze_prototypes_epochs, self.queue_size, self.queue_start_epoch = (
            freeze_prototypes_epochs, queue_size, queue_start_epoch)
        # head_hidden=None: a single linear projection (SwAV without hidden MLP)
        self.head = ProjectionHead(encoder.num_features, head_hidden or head_out, head_out,
                                   head_layers if head_hidden else 1)
        self.prototypes = nn.Linear(head_out, n_prototypes, bias=False)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        self.register_buffer("queue", torch.zeros(n_large, queue_size, head_out))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    def embed(self, encoder: Encoder, views: Sequence[Tensor]) -> Tensor:
        """Unit-norm projections of all views, (V*B, head_out), view-major; one encoder call per size run."""
        groups: List[List[Tensor]] = []
        for v in views:
            if groups and groups[-1][0].shape[1:] == v.shape[1:]:
                groups[-1].append(v)
            else:
                groups.append([v])
        features = torch.cat([encoder(torch.cat(g)) for g in groups])
        return F.normalize(self.head(features), dim=1)

    def forward(self, encoder: Encoder, views: Sequence[Tensor]) -> List[Comparison]:
        n_views = len(views)
        check_views("prototypes", views, at_least=max(2, self.n_large),
                    hint=f" (n_large={self.n_large} large crops, and at least 2 views in all)")
        batch = views[0].shape[0]
        if any(v.shape[0] != batch for v in views):
            raise ZooError(f"every view needs the same batch size, got {[v.shape[0] for v in views]}")
        with torch.no_grad():  # SwAV re-normalises the prototypes every iteration
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        z = self.embed(encoder, views).split(batch)
        codes = self._codes(z[: self.n_large])
        prototypes = self.prototypes.weight
        weight = 1.0 / (self.n_large * (n_views - 1))
        return [Comparison(anchors=z[v], candidates=prototypes, targets=codes[i], weight=weight)
                for i in range(self.n_large) for v in range(n_views) if v != i]

    @torch.no_grad()
    def _codes(self, large: Sequence[Tensor]) -> List[Tensor]:
        weight = self.prototypes.weight.detach()
        rank, size = world()
        use_queue = self.queue_size > 0 and int(self.epoch) >= self.queue_start_epoch
        full = use_queue and int(self.queue_filled) >= self.queue_size
        codes = []
        for i, z in enumerate(large):
            z = z.detach().float()
            scores = float32_scores(z, weight)  # float32 even under autocast: Sinkhorn exponentiates scores / 0.05
            if full:
                mine = self.queue[i].tensor_split(size)[rank]  # each queued row enters Sinkhorn on one process only
                scores = torch.cat([float32_scores(mine, weight), scores])
            codes.append(sinkhorn(scores, self.epsilon, self.iterations)[-z.shape[0]:])
        if use_queue and self.training:  # after Sinkhorn: the current batch is not in its own queue
            self._push([gather(z.detach()) for z in large])
        return codes

    def _push(self, large: Sequence[Tensor]) -> None:
        n = large[0].shape[0]
        if n > self.queue_size:
            raise ZooError(f"the global batch ({n}) is larger than queue_size={self.queue_size}; "
                           "raise queue_size to a multiple of the global batch")
        for i, z in enumerate(large):  # FIFO, newest first
            self.queue[i] = torch.cat([z.to(self.queue.dtype), self.queue[i, : self.queue_size - n]])
        self.queue_filled.add_(n).clamp_(max=self.queue_size)

    def before_optimizer_step(self, epoch: int) -> None:
        """Track the epoch (for the queue) and drop the prototypes' gradient while they are frozen."""
        self.epoch.fill_(int(epoch))
        if epoch < self.freeze_prototypes_epochs:
            self.prototypes.weight.grad = None

    def check_batch_size(self, global_batch: int) -> None:
        """The queue must hold whole global batches (SwAV trims queue_length to a multiple of the batch)."""
        if global_batch < 1:
            raise ZooError(f"prototypes needs a positive global batch, got {global_batch}")
        if self.queue_size and (self.queue_size < global_batch or self.queue_size % global_batch):
            raise ZooError(f"prototypes queue_size={self.queue_size} must be a positive multiple of the global "
                           f"batch size {global_batch} (batch_size x processes); e.g. set queue_size to "
                           f"{max(1, self.queue_size // global_batch) * global_batch}")
