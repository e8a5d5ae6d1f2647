"""Published compute figures of the original releases, for the plan's comparison column.

Each figure is the release's own statement (named in ``source``); ``device_hours`` is devices x hours for the
training length stated, on hardware whose 16-bit tensor peak is ``peak_tflops`` per device.
"""

from __future__ import annotations

from typing import Any, Dict, List

PUBLISHED: List[Dict[str, Any]] = [
    {"recipe": "moco_v2/imagenet", "figure": "200 epochs in 53 h on 8 V100 (fp32)", "epochs": 200,
     "device_hours": 53 * 8, "device": "V100", "peak_tflops": 125.0, "fp32_peak_tflops": 15.7,
     "source": "facebookresearch/moco README (MoCo v2, 200 epochs)"},
    {"recipe": "swav/imagenet", "figure": "3 min 40 s per epoch on 64 V100 at batch 4096 (apex fp16)", "epochs": 1,
     "device_hours": 64 * (3 + 40 / 60) / 60, "device": "V100", "peak_tflops": 125.0,
     "source": "facebookresearch/swav README, running times; scripts/swav_800ep_pretrain.sh (8 nodes x 8 GPUs)"},
    {"recipe": "swav/imagenet", "figure": "52 min 10 s per epoch on 4 V100 at batch 256 (apex fp16)", "epochs": 1,
     "device_hours": 4 * (52 + 10 / 60) / 60, "device": "V100", "peak_tflops": 125.0,
     "source": "facebookresearch/swav README, running times; scripts/swav_200ep_bs256_pretrain.sh (1 node x 4 GPUs)"},
    {"recipe": "simclr/imagenet", "figure": "100 epochs in about 6 h on 32 TPU v3 cores (bf16)", "epochs": 100,
     "device_hours": 32 * 6, "device": "TPU v3 core", "peak_tflops": 61.5,
     "source": "google-research/simclr README; TPU v3 peak 123 bf16 TFLOPS per chip of 2 cores (Google Cloud TPU docs)"},
    {"recipe": "byol/imagenet", "figure": "1000 epochs in about 8 h on 512 TPU v3 cores (bf16)", "epochs": 1000,
     "device_hours": 512 * 8, "device": "TPU v3 core", "peak_tflops": 61.5,
     "source": "BYOL paper (arXiv:2006.07733), section 4: about 8 h for ResNet-50 on 512 TPU v3 cores, batch 4096, 1000 epochs"},
]


def compare(recipe_key: str, training_flops_per_image: float, dataset_images: int, mfu: float) -> List[Dict[str, Any]]:
    """For each published figure of ``recipe_key``: the MFU that figure implies for our counted FLOPs, and whether
    it is more than 2x away from the plan's assumed ``mfu``."""
    rows = []
    for pub in PUBLISHED:
        if pub["recipe"] != recipe_key:
            continue
        flops = training_flops_per_image * dataset_images * pub["epochs"]
        implied = flops / (pub["device_hours"] * 3600 * pub["peak_tflops"] * 1e12)
        rows.append({**pub, "our_flops": flops, "implied_mfu": implied,
                     "differs_over_2x": not (mfu / 2 <= implied <= mfu * 2)})
    return rows
