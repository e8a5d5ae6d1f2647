"""Relative training-step cost of every configuration of an explore grid, to size its budget.

    nice -n 19 .venv/bin/python bench/explore_step_cost.py training/grids/paper_fmnist.yaml [--batch 64] [--steps 3]

Each configuration's five parts are built as ``ContrastiveModule`` builds them, then ``--steps`` optimizer steps
(views, encoder, extraction, similarity, loss, backward, Adam) run on random uint8 images of the datamodule's shape
after one warm-up step; the fastest step is kept, and printed as a multiple of the base's. Ratios measured back to
back on a busy machine are rougher than absolute times are wrong; multiply by an idle machine's base step time
(bench/results/methods_fmnist.md) to estimate a grid's training time. Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.explore.grid import load_grid  # noqa: E402
from training.explore.validate import data_class  # noqa: E402
from zoo.build import build_method  # noqa: E402
from zoo.methods import resolve_method  # noqa: E402
from zoo.spec import CHARACTERISTICS  # noqa: E402


def step_seconds(method, images: torch.Tensor, steps: int) -> float:
    parts = build_method(method)
    params = list(parts.encoder.parameters()) + list(parts.extract.parameters())
    opt = torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-3)
    best = float("inf")
    for i in range(steps + 1):
        start = time.perf_counter()
        comparisons = parts.extract(parts.encoder, parts.augment(images))
        loss = sum(c.weight * parts.loss(parts.similarity(c.anchors, c.candidates), c) for c in comparisons)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up allocators and kernels
            best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    grid = load_grid(args.grid)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.batch, *data_class(grid).image_shape), dtype=torch.uint8)
    rows, base = [], None
    for config in grid.configs:
        method = resolve_method(grid.method, **{c: config.mapping(c) for c in CHARACTERISTICS})
        seconds = step_seconds(method, images, args.steps)
        base = base or seconds
        rows.append({"config": config.label, "step_s": round(seconds, 4), "relative": round(seconds / base, 2)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"sum_relative_per_seed": round(sum(r["relative"] for r in rows), 2), "batch": args.batch}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
