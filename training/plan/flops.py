"""FLOPs of one training step of a recipe, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device.

The recipe's own module runs its real step (``ContrastiveModule.loss_of_views``: every view, the heads, the momentum
teacher, the queue, multi-crop, Sinkhorn) on views of the recipe's shapes at its per-GPU batch, forward and then
backward, inside the counter. On the meta device tensors have shapes but no data, so the count is exact for the
operations the counter knows (matrix products, convolutions, attention: 2 FLOPs per multiply-add) and costs no
arithmetic; elementwise work (activations, normalisation, the EMA update, the optimizer) is not counted, as in
every published FLOP figure. The views themselves are made by the recipe's augmentation on a batch of 2 real
uint8 images on the CPU (their shapes do not depend on the batch).

Counter-based, not "2x forward": the backward of the first layer needs no input gradient, and a teacher has no
backward at all, so the counted backward is less than twice the forward.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode


def _meta_or_scalar(t: torch.Tensor) -> torch.Tensor:
    if t.dim() > 0:
        return t.to("meta")
    return torch.zeros((), dtype=t.dtype) if t.is_meta else t


def to_meta(module: torch.nn.Module) -> torch.nn.Module:
    """Parameters and tensor buffers to the meta device; 0-dim buffers (queue pointers, epoch counters) on the
    CPU, where the step's Python reads them (zero when the module was built on the meta device)."""
    return module._apply(_meta_or_scalar)


def view_shapes(module: Any, image_shape: Sequence[int]) -> List[List[int]]:
    """Per-image shapes of the views the recipe's augmentation (rebuilt on the CPU from the module's method row)
    makes of a batch of real uint8 images, in order."""
    from zoo.parts import AUGMENTATIONS

    augment = AUGMENTATIONS.build(module.method.augment.name, module.method.augment.kwargs)
    images = torch.randint(0, 256, (2, *image_shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        return [list(v.shape[1:]) for v in augment(images)]


def steady_state(extract: Any) -> None:
    """Count the step a recipe runs most of the time: a SwAV queue that starts later in training is on and full."""
    if getattr(extract, "queue_size", 0) and hasattr(extract, "queue_start_epoch") and hasattr(extract, "epoch"):
        extract.epoch.fill_(int(extract.queue_start_epoch))
        extract.queue_filled.fill_(int(extract.queue_size))


def _encoder_flops(encoder: torch.nn.Module, shape: Sequence[int]) -> int:
    """Forward FLOPs of the encoder on one view of ``shape`` (a patch grid counts all its patches)."""
    x = torch.empty((2, *shape), device="meta")  # 2: batch norm in training mode needs two samples
    if x.dim() > 4:  # CPC: (rows, cols, C, h, w) patches of one image
        x = x.reshape(-1, *shape[-3:])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder(x)
    return int(counter.get_total_flops()) // 2


def count_step(module: Any, image_shape: Sequence[int], batch: int) -> Dict[str, Any]:
    """Per-image FLOPs of the recipe's training step at per-GPU ``batch``; the module is left on the meta device."""
    shapes = view_shapes(module, image_shape)
    module.train()
    to_meta(module)
    steady_state(module.extract)
    views = [torch.empty((batch, *s), device="meta") for s in shapes]
    with FlopCounterMode(display=False) as counter:
        loss = module.loss_of_views(views)
        forward = int(counter.get_total_flops())
        loss.backward()
        total = int(counter.get_total_flops())
    distinct = [s for i, s in enumerate(shapes) if s not in shapes[:i]]
    counts = Counter(tuple(s) for s in shapes)
    per_view = [{"shape": s, "count": counts[tuple(s)], "encoder_forward_flops": _encoder_flops(module.encoder, s)}
                for s in distinct]
    return {"batch_counted": batch, "views_per_image": len(shapes), "views": per_view,
            "forward_flops_per_image": forward / batch, "backward_flops_per_image": (total - forward) / batch,
            "training_flops_per_image": total / batch, "backward_counted": True}
