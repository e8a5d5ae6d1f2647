"""Cross-process helpers for representation extraction under DDP (no-ops in a single process).

SimCLR: "we aggregate [...] across all devices" so that every anchor sees the negatives of the global batch.
``gather_with_grad`` concatenates a tensor from every process in rank order and routes gradients back to the
process that produced each slice.
"""

from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> Tuple[int, int]:
    """(rank, world size); (0, 1) outside an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's loss depends on every slice
        rank, size = dist.get_rank(), dist.get_world_size()
        return grad.chunk(size)[rank]


def gather_with_grad(x: Tensor) -> Tensor:
    """All processes' ``x`` concatenated along dim 0 (rank order); gradients flow back to their owners."""
    _, size = world()
    return x if size == 1 else _GatherWithGrad.apply(x)


@torch.no_grad()
def gather(x: Tensor) -> Tensor:
    """All processes' ``x`` concatenated along dim 0, without gradients (queues, teachers' keys)."""
    _, size = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
