"""The plan's arithmetic: from counted FLOPs and measured memory to batch limit, steps, GPU-hours, cost, loaders.

Every constant here is an assumption the plan prints with its result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional

from training.plan.gpus import GPU, RESERVE_GIB

#: optimizer state per trainable parameter, in fp32 copies (Adam: two moments; SGD and LARS: one momentum buffer)
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "sgd": 1, "lars": 1}
#: DDP keeps one flat copy of the gradients in its all-reduce buckets
DDP_GRADIENT_COPIES = 1
JPEG_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "jpeg_decode.json"
#: datamodules that decode JPEG files in loader processes; the others slice uint8 tensors held in memory
DECODING = ("ImageFolderDataModule", "SplitFolderDataModule")


#: the loader workers' work per image, by ``ImageFolderDataModule(decode=...)``, as bench/jpeg_decode.py names it
LOADER_WORK = {"cpu": ("pil_resize_center_crop", "PIL decode + resize + centre crop"),
               "device": ("read_file_only", "file read only; the GPU decodes")}


def decode_rate(decode: str = "cpu") -> Dict[str, Any]:
    """Images per second per CPU core of the loader's work per image (``LOADER_WORK``), from
    ``bench/results/jpeg_decode.json`` (``python bench/jpeg_decode.py``)."""
    key, what = LOADER_WORK[decode]
    try:
        data = json.loads(JPEG_RESULTS.read_text())
        row = data["results"][key]
        return {"images_per_s_per_core": float(row["images_per_s_per_core"]),
                "source": f"bench/results/jpeg_decode.json ({what}, {data['cpu']['model']})"}
    except (OSError, KeyError, ValueError, TypeError):
        return {"images_per_s_per_core": None,
                "source": f"no {key} in bench/results/jpeg_decode.json: run bench/jpeg_decode.py"}


def static_bytes(module: Any, optimizer: str) -> Dict[str, int]:
    """Memory that does not grow with the batch: fp32 weights (also under bf16 autocast, which keeps fp32 master
    weights), buffers (queues), gradients, DDP's gradient buckets and the optimizer state."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() * b.element_size() for b in module.buffers())
    states = OPTIMIZER_STATES.get(optimizer, 2)
    return {"weights": 4 * params, "buffers": buffers, "gradients": 4 * trainable,
            "ddp_buckets": 4 * trainable * DDP_GRADIENT_COPIES, "optimizer_state": 4 * trainable * states}


def estimate(*, flops: Dict[str, Any], memory: Optional[Dict[str, Any]], static: Dict[str, int], gpu: GPU, mfu: float,
             price_per_hour: Optional[float], batch_per_gpu: int, gpus: int, epochs: int, dataset_images: int,
             datamodule: str, decode: str = "cpu") -> Dict[str, Any]:
    per_image = flops["training_flops_per_image"]
    global_batch = batch_per_gpu * gpus
    steps_per_epoch = dataset_images // global_batch
    images = steps_per_epoch * global_batch * epochs
    total = per_image * images
    sustained = gpu.peak_tflops * 1e12 * mfu
    gpu_hours = total / sustained / 3600
    images_per_s = sustained / per_image
    out: Dict[str, Any] = {
        "global_batch": global_batch, "steps_per_epoch": steps_per_epoch, "epochs": epochs,
        "total_pflops": total / 1e15, "gpu_hours": gpu_hours, "wall_hours_on_recipe_gpus": gpu_hours / gpus,
        "epoch_minutes_on_recipe_gpus": gpu_hours / gpus / epochs * 60,
        "images_per_s_per_gpu": images_per_s, "step_seconds": global_batch / (images_per_s * gpus),
        "cost": None if price_per_hour is None else gpu_hours * price_per_hour,
    }
    fixed = sum(static.values())
    usable = (gpu.memory_gib - RESERVE_GIB) * 2**30
    per_act = (memory or {}).get("bytes_per_image")
    per_step = (memory or {}).get("bytes_per_step", 0)
    if per_act:
        out["max_batch_per_gpu"] = max(0, math.floor((usable - fixed - per_step) / per_act))
        out["recipe_batch_fits"] = out["max_batch_per_gpu"] >= batch_per_gpu
    else:
        out["max_batch_per_gpu"] = None
        out["recipe_batch_fits"] = None if fixed < usable else False
    out["static_memory_gib"] = fixed / 2**30
    if datamodule in DECODING:
        rates = {mode: decode_rate(mode) for mode in {decode, "device"}}

        def cores(mode: str) -> Optional[float]:
            per_core = rates[mode]["images_per_s_per_core"]
            return None if per_core is None else images_per_s / per_core

        out["loader"] = {"decodes_jpeg": True, "decode": decode, "cores_per_gpu": cores(decode),
                         "cores_per_gpu_device_decode": cores("device"), **rates[decode]}
    else:
        out["loader"] = {"decodes_jpeg": False, "cores_per_gpu": 0,
                         "source": "in-memory uint8 tensor: batches are slices, augmentation runs on the GPU"}
    return out
