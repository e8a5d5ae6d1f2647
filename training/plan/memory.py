"""The one memory model of a recipe: what its training step holds, counted on the meta device.

The recipe's module is built on the meta device (shapes without data: AMDIM's 666 M parameters in seconds, no
memory) and its real training step (``loss_of_views``) runs there on views of the recipe's shapes. A step holds

- what the parameters hold: fp32 weights and buffers (queues, a momentum teacher), one gradient per trainable
  weight and the optimizer's state (Adam: two moments; SGD and LARS: one momentum buffer);
- the activations: every tensor autograd saves for the backward pass, counted once per storage (views share one)
  and leaving out the weights' own storages, in fp32 as on a CPU without native bf16; and a quarter more
  (``BACKWARD_FACTOR``) for what the backward pass allocates beside them (activation gradients, convolution
  buffers) before it frees what it has consumed;
- ``BASE``: the interpreter with torch and Lightning imported, and the allocator's slack around the step.

``check-recipe`` refuses a recipe whose check needs more than the machine has (``refuse_if_too_large``, at the
smallest batch the method accepts); ``plan`` takes the activation memory per image (``activation_per_image``:
the count at two batches, the slope between them, so that what does not grow with the batch cancels) to find the
largest batch a GPU holds. Both are the same count, so they agree, and a count does not vary from run to run.
``bench/check_memory.py`` prints the estimate beside the peak a check really reaches (``RssAnon`` sampled every
20 ms); ``bench/results/check_memory.json`` holds its last run.

The figure is for fp32. Under bf16 autocast on a GPU, convolutions and matrix products keep their inputs in
bf16, so the GPU's figure is lower (up to about half); the plan uses the fp32 figure, an upper bound.
"""


from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from zoo.errors import ZooError

#: bytes the backward pass holds beside the saved tensors at its peak, per byte saved: a margin. Measured peaks
#: stayed below the saved count alone: CPC v2 ImageNet's check peaked at 10.72 GiB RssAnon, 2.8 GiB above its
#: weights, gradients, Adam state and BASE against 3.5 GiB saved (``bench/results/check_memory.json``, AMD EPYC),
#: and SwAV ImageNet's step grew by 215-257 MiB of VmHWM per image against 254 MiB saved (the slope of peak
#: resident memory between two batches, which ``plan`` measured before it counted), because the backward pass
#: frees saved tensors as it consumes them
BACKWARD_FACTOR = 0.25
#: the process before the recipe (interpreter, torch, Lightning, jsonargparse: RssAnon 0.4 GiB measured), and what
#: the allocator holds around the optimizer step beyond the tensors counted here (up to 1.6 GiB measured on AMDIM
#: ImageNet, whose activations are small beside its weights)
BASE = 2 << 30


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a check needs, by what holds them."""

    parameters: int  # count, not bytes
    weights: int
    buffers: int
    gradients: int
    optimizer_state: int
    saved_activations: int
    backward: int
    base: int

    @property
    def total(self) -> int:
        return (self.weights + self.buffers + self.gradients + self.optimizer_state + self.saved_activations
                + self.backward + self.base)

    def to_dict(self) -> Dict[str, int]:
        return {**asdict(self), "total": self.total}


def meminfo_bytes(field: str) -> Optional[int]:
    """A Linux ``/proc/meminfo`` field in bytes (``MemAvailable``, ``MemTotal`` ...), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> Optional[int]:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None where unknown."""
    return meminfo_bytes("MemAvailable")


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def saved_activation_bytes(module: Any, views: list) -> int:
    """Bytes of the tensors autograd saves for backward in ``module.loss_of_views(views)`` (each storage once, the
    parameters' and buffers' storages left out). ``module`` and ``views`` are on the meta device."""
    own = {_storage_key(t) for t in list(module.parameters()) + list(module.buffers()) if t.dim() > 0}
    seen: Dict[int, int] = {}
    keep = []  # holds the saved tensors so that no storage key is reused while counting

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in own:
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
            keep.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module.loss_of_views(views)
    keep.clear()
    return sum(seen.values())


def memory_need(recipe: str) -> MemoryNeed:
    """What ``check-recipe`` of ``recipe`` needs at its smallest batch, from the module built on the meta device."""
    from training.plan.estimate import static_bytes
    from training.plan.recipe import load_recipe, smallest_batch

    built = load_recipe(recipe, dataset_images=1, device="meta")
    module = built.module
    static = static_bytes(module, module.hparams.optimizer)
    saved = step_saved_bytes(module, built.image_shape, [smallest_batch(module)])[0]
    return MemoryNeed(parameters=sum(p.numel() for p in module.parameters()), weights=static["weights"],
                      buffers=static["buffers"], gradients=static["gradients"],
                      optimizer_state=static["optimizer_state"], saved_activations=saved,
                      backward=int(BACKWARD_FACTOR * saved), base=BASE)


def activation_per_image(module: Any, image_shape: Sequence[int]) -> Dict[str, Any]:
    """The activation memory of ``module``'s training step as a line in the batch: bytes one more image costs and
    bytes every step holds whatever its batch (a queue's logits, CPC's context network over a fixed grid), from
    the count (saved tensors and ``BACKWARD_FACTOR`` more, fp32) at the smallest accepted batch and at the first
    accepted batch of at least twice that. At the smallest batch the line gives ``memory_need``'s activations
    exactly. ``module`` is moved to the meta device."""
    from training.plan.recipe import accepted_batch, smallest_batch

    small = smallest_batch(module)
    large = accepted_batch(module, 2 * small)
    held = [int((1 + BACKWARD_FACTOR) * saved) for saved in step_saved_bytes(module, image_shape, [small, large])]
    per_image = max(0.0, (held[1] - held[0]) / (large - small))
    return {"method": "tensors saved for backward in the training step, counted on the meta device at two batches, "
                      f"plus {BACKWARD_FACTOR:g}x for the backward pass; fp32",
            "batches": [small, large], "bytes_at_batches": held, "bytes_per_image": per_image,
            "bytes_per_step": max(0.0, held[0] - per_image * small)}


def step_saved_bytes(module: Any, image_shape: Sequence[int], batches: Sequence[int]) -> list:
    """``saved_activation_bytes`` of ``module``'s training step (train mode, on the meta device, where it is
    moved) on views of ``image_shape`` at each of ``batches``: the one count ``memory_need`` and
    ``activation_per_image`` read."""
    from training.plan.flops import to_meta, view_shapes

    shapes = view_shapes(module, image_shape)
    module.train()
    to_meta(module)
    return [saved_activation_bytes(module, [torch.empty((b, *s), device="meta") for s in shapes]) for b in batches]


class NotEnoughMemory(ZooError):
    """The machine has too little memory available for this recipe's check; nothing was trained. ``need`` and
    ``have`` are the bytes the check needs and the bytes that were available."""

    def __init__(self, message: str, need: int = 0, have: int = 0) -> None:
        super().__init__(message)
        self.need, self.have = need, have


class AboveParameterLimit(ZooError):
    """The recipe's model has more parameters than the caller's ``max_parameters``; nothing was trained."""


def refuse_if_too_large(recipe: str, max_parameters: Optional[int] = None) -> MemoryNeed:
    """Count, on the meta device, what the check of ``recipe`` needs; refuse it before anything is built at full
    size if it has more than ``max_parameters`` parameters or needs more memory than is available."""
    need = memory_need(recipe)
    if max_parameters and need.parameters > max_parameters:
        raise AboveParameterLimit(f"{need.parameters:,} parameters, above the limit of {max_parameters:,} given "
                                  "to this check (--max-parameters); nothing was trained")
    free = available_memory()
    if free is not None and need.total > free:
        gib = {key: value / 2**30 for key, value in need.to_dict().items()}
        raise NotEnoughMemory(
            f"the check needs about {gib['total']:.1f} GiB of memory ({need.parameters / 1e6:.0f} M parameters: "
            f"{gib['weights'] + gib['buffers']:.1f} GiB weights and buffers, {gib['gradients']:.1f} GiB gradients, "
            f"{gib['optimizer_state']:.1f} GiB optimizer state, {gib['saved_activations'] + gib['backward']:.1f} GiB "
            f"activations, {gib['base']:.1f} GiB process and allocator), "
            f"this machine has {free / 2**30:.1f} GiB available; run it on a larger machine",
            need=need.total, have=free)
    return need


def release_free_heap() -> None:
    """Give the heap's free pages back to the kernel (glibc ``malloc_trim``): a long-lived process (a test session,
    a notebook) holds freed memory that stays resident. Here a step's tensors would reuse it without raising the
    peak, and the slope would read 0; after a large ``check-recipe`` it would stay out of other processes' reach."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
