"""The ceiling of a training step: the model's own compute and nothing else.

``python bench/ceiling.py --method simclr|byol [--precision 32-true] [--channels-last true] [--steps 20]``

The same encoder (torchvision resnet18, standard stem, ``fc`` removed), the same heads and the same optimizer as
``bench/compare_lightly.py`` uses on both sides, written in plain PyTorch and stepped on views already made:
no data loading, no augmentation, no training loop around it. SimCLR: MLP head 512-512-128 (BN; a BN on its
output too, as in SimCLR's code and lightly's head), NT-Xent over 2N views at temperature 0.5. BYOL: projector
512-1024-256 and predictor 256-1024-256 (BN), EMA target (backbone + projector) updated each step, 2 - 2 cos,
symmetrised. Adam (fused where torch has it), constant learning rate.

A library's views/s divided by this figure, measured in the same run on the same machine, is the fraction of the
hardware's reach it attains (``ceiling_fraction`` in ``bench/results/compare_lightly*.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def mlp(in_features: int, hidden: int, out: int, output_batch_norm: bool = False) -> nn.Module:
    """Linear -> BN -> ReLU -> Linear; with ``output_batch_norm`` SimCLR's ending (Linear without bias, then BN)."""
    last = [nn.Linear(hidden, out, bias=False), nn.BatchNorm1d(out)] if output_batch_norm else [nn.Linear(hidden, out)]
    return nn.Sequential(nn.Linear(in_features, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         *last)


def heads(method: str) -> List[nn.Module]:
    """The heads of ``method`` in the order ``bench/compare_lightly.py`` shares their initial weights."""
    if method == "simclr":
        return [mlp(512, 512, 128, output_batch_norm=True)]
    if method == "byol":
        return [mlp(512, 1024, 256), mlp(256, 1024, 256)]
    raise ValueError(f"method must be simclr or byol, got {method!r}")


def backbone() -> nn.Module:
    net = torchvision.models.resnet18()
    net.fc = nn.Identity()
    return net


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z0, z1]).float(), dim=1)
    n = z0.shape[0]
    scores = z @ z.t() / temperature
    scores.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(scores, targets)


def regression(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=1)).mean()


def measure(method: str, batch_size: int = 256, size: int = 32, precision: str = "32-true",
            channels_last: bool = True, steps: int = 20, warmup: int = 3, lr: float = 1e-3,
            seed: int = 0) -> Dict[str, float]:
    """Median views/s of ``steps`` steps after ``warmup``, on 2 x ``batch_size`` random views."""
    torch.manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = backbone().to(memory_format=fmt)
    views = [torch.randn(batch_size, 3, size, size).contiguous(memory_format=fmt) for _ in range(2)]
    if method == "simclr":
        (head,) = heads(method)
        params: List[nn.Parameter] = list(net.parameters()) + list(head.parameters())
        target = predictor = None
    else:
        head, predictor = heads(method)
        target = nn.Sequential(copy.deepcopy(net), copy.deepcopy(head)).requires_grad_(False)
        params = list(net.parameters()) + list(head.parameters()) + list(predictor.parameters())
    online = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr, fused=True)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    times: List[float] = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        with autocast:
            if target is None:
                loss = nt_xent(head(net(views[0])), head(net(views[1])), 0.5)
            else:
                p0, p1 = predictor(head(net(views[0]))), predictor(head(net(views[1])))
                with torch.no_grad():
                    t0, t1 = target(views[0]), target(views[1])
                loss = 0.5 * (regression(p0, t1) + regression(p1, t0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if target is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(target.parameters()), online, 0.01)
        times.append(time.perf_counter() - start)
    step = statistics.median(times[warmup:])
    return {"views_per_s": 2 * batch_size / step, "s_per_step": step, "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="simclr", choices=["simclr", "byol"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--channels-last", default="true", choices=["true", "false"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args.method, args.batch_size, precision=args.precision,
                     channels_last=args.channels_last == "true", steps=args.steps)
    print(json.dumps({**vars(args), **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
