"""Activation memory per image: the slope of a training step's peak memory between two batch sizes, on the CPU.

The recipe's module is built once on the CPU at its real shape (weights in fp32). Each batch size then runs in a
child process forked from that state, so both steps start from the same heap, and neither sees what the other
left behind (glibc keeps freed small blocks, so two steps in one process would share memory); it runs on one
thread, as the parent's OpenMP pool does not survive fork. The child resets
its peak resident set (Linux: ``5`` written to ``/proc/self/clear_refs`` resets ``VmHWM``), makes the views of
``batch`` synthetic uint8 images with the recipe's own augmentation, runs the real step forward and backward, and
reports ``VmHWM``. A CPU process has no caching allocator to hide freed memory the way CUDA's does. Everything
that does not grow with the batch (interpreter, weights, gradients) cancels in the difference of the two peaks;
divided by the difference of the batches it is the memory one more image costs: the activations autograd keeps
for backward, plus the step's transient buffers.

The figure is for fp32. Under bf16 autocast on a GPU, convolutions and matrix products keep their inputs in
bf16, so the GPU figure is lower (up to about half); the plan uses the fp32 figure, an upper bound, for its batch
limit.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

from zoo.errors import ZooError

#: FLOPs the larger of the two measured steps may add over the smaller one (keeps the measurement to seconds)
EXTRA_FLOPS = 60e9
MAX_EXTRA_IMAGES = 62
CLEAR_REFS = Path("/proc/self/clear_refs")


def accepted_batches(module: Any, training_flops_per_image: float) -> Tuple[int, int]:
    """The two batch sizes to measure: the smallest the method accepts, and a larger accepted one whose extra
    images cost about ``EXTRA_FLOPS`` (at least one image more, at most ``MAX_EXTRA_IMAGES``)."""
    from training.check_recipe import smallest_batch

    small = smallest_batch(module)
    extra = int(max(1, min(MAX_EXTRA_IMAGES, EXTRA_FLOPS // max(training_flops_per_image, 1.0))))
    for large in range(small + extra, small + extra + 4096):
        try:
            module.extract.check_batch_size(large)
        except ZooError:
            continue
        return small, large
    raise ZooError(f"no batch above {small} is accepted by the extraction {type(module.extract).__name__}")


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise ZooError("/proc/self/status has no VmHWM line")


def release_free_heap() -> None:
    """Give the heap's free pages back to the kernel (glibc ``malloc_trim``): a long-lived process (a test session,
    a notebook) holds freed memory that stays resident. Here a step's tensors would reuse it without raising the
    peak, and the slope would read 0; after a large ``check-recipe`` it would stay out of other processes' reach."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _child(module: Any, image_shape: Sequence[int], batch: int, out: Any) -> None:
    try:
        import torch

        # one thread: the OpenMP pool the parent used while building the module does not survive fork
        torch.set_num_threads(1)
        release_free_heap()
        CLEAR_REFS.write_text("5")
        images = torch.randint(0, 256, (batch, *image_shape), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(0))
        module.train()
        loss = module.loss_of_views(module._views(images))
        loss.backward()
        out.send(("ok", _peak_kib() * 1024))
    except BaseException as err:  # reported by the parent as one line
        out.send(("error", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"))
    finally:
        out.close()


def peak_bytes(module: Any, image_shape: Sequence[int], batch: int, timeout: float = 1800) -> int:
    """Peak resident bytes of one training step of ``module`` at ``batch``, in a forked child."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(module, image_shape, batch, send))
    child.start()
    send.close()
    if not receive.poll(timeout):
        child.kill()
        raise ZooError(f"the memory measurement at batch {batch} did not finish in {timeout:.0f} s")
    try:
        status, value = receive.recv()
    except EOFError:
        status, value = "error", f"the measuring process died (exit code {child.join() or child.exitcode})"
    child.join()
    if status != "ok":
        raise ZooError(f"the memory measurement at batch {batch} failed: {value}")
    return int(value)


def activation_slope(module: Any, image_shape: Sequence[int], training_flops_per_image: float) -> Dict[str, Any]:
    """Bytes of activation memory per image (fp32, CPU) of ``module`` (built on the CPU) at ``image_shape``."""
    if not os.access(CLEAR_REFS, os.W_OK) or not hasattr(os, "fork"):
        raise ZooError("measuring activation memory needs Linux (/proc/self/clear_refs and fork); pass --memory skip")
    small, large = accepted_batches(module, training_flops_per_image)
    low, high = peak_bytes(module, image_shape, small), peak_bytes(module, image_shape, large)
    return {"method": "peak resident memory (VmHWM) of one fp32 training step on the CPU, each batch in a "
                      "child forked from the built module; slope between the two batches",
            "batches": [small, large], "peak_bytes": [low, high],
            "bytes_per_image": max(0.0, (high - low) / (large - small))}
