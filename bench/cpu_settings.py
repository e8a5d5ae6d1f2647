"""The CPU-kernel-dependent defaults, measured on this machine: precision, memory format, fused optimizer.

``python bench/cpu_settings.py [--steps 8] [--out bench/results/cpu_settings_<cpu>.json]``

One training step of the YADIM Fashion-MNIST recipe's model (AMDIM encoder ndf 32, n_rkhs 256, depth 1, 32x32
grey, batch 256, two views, dot / sqrt(d) tanh-clipped, NCE, Adam), augmentation included, for each setting that
``training.pretrain.hardware`` chooses: fp32 or bf16 autocast, NCHW or channels-last, fused or multi-tensor Adam.
Reports the median seconds per step after one warm-up step, the CPU's model name and whether torch reports native
bf16 (AVX512-BF16 or AMX). This is what the ``auto`` choices rest on; run it on each kind of CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch

from training.pretrain.hardware import cpu_name, native_cpu_bf16
from zoo.build import build_method
from zoo.methods import resolve_method

RECIPE_PARTS = dict(augment={"size": 32, "mean": [0.286], "std": [0.353], "crop_scale": [0.5, 1.0]},
                    encoder={"in_channels": 1, "image_size": 32, "ndf": 32, "n_rkhs": 256, "depth": 1})


def step_seconds(precision: str, channels_last: bool, fused: bool, steps: int, batch: int = 256) -> float:
    torch.manual_seed(0)
    parts = build_method(resolve_method("yadim", **RECIPE_PARTS))
    encoder = parts.encoder.to(memory_format=torch.channels_last) if channels_last else parts.encoder
    params = list(encoder.parameters()) + list(parts.extract.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, **({"fused": True} if fused else {"foreach": True}))
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    times: List[float] = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        views = parts.augment(images)
        if channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with autocast:
            comparisons = parts.extract(encoder, views)
            loss = sum(c.weight * parts.loss(parts.similarity(c.anchors, c.candidates), c) for c in comparisons)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--bf16-steps", type=int, default=3, help="fewer steps for bf16 where it is emulated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    native = native_cpu_bf16()
    rows: List[Dict] = []
    for precision, channels_last, fused in [("32-true", False, True), ("32-true", True, True),
                                            ("32-true", True, False), ("bf16-mixed", False, True),
                                            ("bf16-mixed", True, True)]:
        steps = args.steps if precision == "32-true" or native else args.bf16_steps
        seconds = step_seconds(precision, channels_last, fused, steps)
        rows.append({"precision": precision, "channels_last": channels_last, "fused_adam": fused,
                     "s_per_step": round(seconds, 4), "views_per_s": round(512 / seconds, 1), "steps": steps})
        print(json.dumps(rows[-1]), flush=True)
    result = {"cpu": cpu_name(), "native_bf16": native, "threads": args.threads, "torch": torch.__version__,
              "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
