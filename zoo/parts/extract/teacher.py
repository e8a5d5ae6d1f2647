"""Momentum teachers, shared by MoCo v2's key encoder (``momentum_queue``) and BYOL's target (``momentum_predictor``).

In Falcon & Cho's terms both are representation-extraction strategies: MoCo compares a query from the online
encoder with keys from a slowly moving copy of it and draws its negatives from a queue of past keys; BYOL has no
negatives and regresses the moving copy's projection ("All of these approaches (except BYOL) have converged on
using an NCE loss"). Both teachers are frozen copies of the online encoder (and head) owned by the extractor, so
checkpoints save and restore them; the online encoder itself is passed in and never owned here.
"""

from __future__ import annotations

import copy
import math
from typing import Iterable, Iterator, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from zoo.errors import ZooError


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
        for teacher, student in zip(self.copies, online, strict=True):
            pairs = list(_pairs(teacher.named_parameters(), student.named_parameters()))
            if pairs:  # one multi-tensor kernel per op instead of two small ops per parameter
                targets = [t for (_, t), _ in pairs]
                torch._foreach_mul_(targets, momentum)
                torch._foreach_add_(targets, [s.detach().to(t.dtype) for (_, t), (_, s) in pairs],
                                    alpha=1.0 - momentum)
            for (_, t), (_, s) in _pairs(teacher.named_buffers(), student.named_buffers()):
                t.copy_(s)


def _pairs(teacher: Iterable[Tuple[str, Tensor]], student: Iterable[Tuple[str, Tensor]]
           ) -> Iterator[Tuple[Tuple[str, Tensor], Tuple[str, Tensor]]]:
    teacher, student = list(teacher), list(student)
    if [n for n, _ in teacher] != [n for n, _ in student]:
        raise ZooError("the EMA teacher no longer matches the online modules (different parameter names)")
    return zip(teacher, student, strict=True)


def byol_tau(progress: float, base: float = 0.996) -> float:
    """BYOL's target decay: "τ = 1 − (1 − τbase) · (cos(πk/K) + 1)/2", k/K being ``progress`` in [0, 1].

    The training loop passes k/K with k the number of optimizer steps taken before this update, so the first
    update uses τbase, as BYOL's code does (it evaluates the schedule at the step counter before incrementing it).
    """
    if not 0.0 <= base <= 1.0:
        raise ZooError(f"base_tau must be in [0, 1], got {base}")
    progress = min(1.0, max(0.0, float(progress)))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
