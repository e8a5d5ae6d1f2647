"""One prepared GPU measurement (at most ~8 minutes on one H100/H200): every method's CIFAR-size and ImageNet-size
recipe for a fixed number of steps on synthetic images in bf16, and lightly's SimCLR and BYOL on the same card.

    python bench/gpu_proof.py [--steps 20] [--warmup 5] [--compile] [--out bench/results/gpu_proof.json]
    python bench/gpu_proof.py --cpu      # CI: one step of each method's Fashion-MNIST recipe on the CPU, no file

Ours: the recipe's module (built as ``python -m training fit`` builds it, :func:`training.plan.recipe.load_recipe`)
in a Lightning Trainer (one device, ``bf16-mixed``, channels-last as the recipe resolves it) on
:class:`training.pretrain.synthetic.SyntheticImages` of the recipe's input shape at its per-GPU batch: uint8 images
go to the GPU, the views are made there, the step is the real one (EMA teachers, queues, Sinkhorn). Reported per
recipe: images/s and views/s (median step time after the warm-up), peak GPU memory (``max_memory_allocated``), and
MFU = images/s x the plan's counted training FLOPs per image / the card's dense bf16 peak
(:mod:`training.plan.gpus`).

lightly 1.6.0: a plain loop of lightly's own blocks as in ``bench/compare_lightly.py`` (torchvision ResNet-50,
``SimCLRProjectionHead`` + ``NTXentLoss``; ``BYOLProjectionHead`` / ``BYOLPredictionHead`` + ``update_momentum``),
at 224x224 and our SimCLR / BYOL ImageNet recipes' per-GPU batch, bf16 autocast, channels-last, on views already on
the GPU (lightly's transforms run per sample with PIL on the CPU; they are not what this compares). The ratio is
ours / lightly in images/s; ours includes making the views on the GPU.

Results are written after each entry (a run cut short keeps what it measured), atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("simclr", "moco_v2", "byol", "swav", "amdim", "yadim", "cpc_v2")


def card() -> Dict[str, Any]:
    from training.plan.gpus import GPUS

    if not torch.cuda.is_available():
        import platform

        return {"device": "cpu", "name": platform.processor() or platform.machine(), "peak_tflops": None}
    name = torch.cuda.get_device_name(0)
    peak = next((g.peak_tflops for key, g in GPUS.items() if key in name.lower().replace(" ", "")), None)
    props = torch.cuda.get_device_properties(0)
    return {"device": "cuda", "name": name, "memory_gib": round(props.total_memory / 2**30, 1), "peak_tflops": peak,
            "torch": torch.__version__, "cuda": torch.version.cuda}


class StepTimes:
    """Wall time of each training step, with the device synchronised at its end."""

    def __init__(self) -> None:
        self.times: List[float] = []

    def mark(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def median_step(self, warmup: int) -> float:
        gaps = [b - a for a, b in zip(self.times[warmup:], self.times[warmup + 1:], strict=False)]
        return statistics.median(gaps) if gaps else float("nan")


def run_ours(recipe: str, steps: int, warmup: int, cpu: bool, compile_: bool) -> Dict[str, Any]:
    import pytorch_lightning as pl

    from training.plan.flops import count_step
    from training.plan.recipe import load_recipe
    from training.pretrain.synthetic import SyntheticImages

    counted = load_recipe(recipe)
    batch = 2 if cpu else counted.batch_per_gpu
    step_count = count_step(counted.module, counted.image_shape, batch)
    flops, views = step_count["training_flops_per_image"], step_count["views_per_image"]
    built = load_recipe(recipe, device="cpu")
    module = built.module
    if compile_:
        module.encoder = torch.compile(module.encoder)
    times = StepTimes()

    class Timer(pl.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            times.mark()

    total = 1 if cpu else warmup + steps + 1
    data = SyntheticImages(shape=list(built.image_shape), pretrain_batches=total, batch_size=batch)
    trainer = pl.Trainer(accelerator="cpu" if cpu else "gpu", devices=1, precision="32-true" if cpu else "bf16-mixed",
                         max_steps=total, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Timer()])
    if not cpu:
        torch.cuda.reset_peak_memory_stats()
    with contextlib.redirect_stdout(sys.stderr):
        trainer.fit(module, datamodule=data)
    step = None if cpu else times.median_step(warmup)  # one step on the CPU: no rate
    return {"recipe": recipe, "batch": batch, "input_shape": list(built.image_shape), "steps": total,
            "step_s": step, "images_per_s": step and batch / step, "views_per_image": views,
            "views_per_s": step and views * batch / step,
            "training_flops_per_image": flops, "loss": float(module._loss),
            "peak_gpu_memory_gib": None if cpu else torch.cuda.max_memory_allocated() / 2**30}


def run_lightly(method: str, batch: int, size: int, steps: int, warmup: int, cpu: bool) -> Dict[str, Any]:
    import torchvision
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    device = "cpu" if cpu else "cuda"
    backbone = (torchvision.models.resnet18() if cpu else torchvision.models.resnet50())
    width = backbone.fc.in_features
    backbone.fc = torch.nn.Identity()
    if method == "simclr":
        head = SimCLRProjectionHead(width, 2048, 128)
        criterion: Callable = NTXentLoss(temperature=0.1, gather_distributed=False)
        parts = [backbone, head]
    else:
        head = BYOLProjectionHead(width, 4096, 256)
        predictor = BYOLPredictionHead(256, 4096, 256)
        target_backbone, target_head = copy.deepcopy(backbone), copy.deepcopy(head)
        deactivate_requires_grad(target_backbone)
        deactivate_requires_grad(target_head)
        criterion = NegativeCosineSimilarity()
        parts = [backbone, head, predictor, target_backbone, target_head]
    for part in parts:
        part.to(device=device, memory_format=torch.channels_last)
    params = [p for part in parts for p in part.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    gen = torch.Generator(device=device).manual_seed(0)
    x0, x1 = (torch.randn(batch, 3, size, size, device=device, generator=gen).contiguous(
        memory_format=torch.channels_last) for _ in range(2))
    autocast = contextlib.nullcontext() if cpu else torch.autocast("cuda", dtype=torch.bfloat16)
    times = StepTimes()
    if not cpu:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(1 if cpu else warmup + steps + 1):
        with autocast:
            if method == "simclr":
                loss = criterion(head(backbone(x0)), head(backbone(x1)))
            else:
                update_momentum(backbone, target_backbone, 0.99)
                update_momentum(head, target_head, 0.99)
                p0, p1 = predictor(head(backbone(x0))), predictor(head(backbone(x1)))
                with torch.no_grad():
                    z0, z1 = target_head(target_backbone(x0)), target_head(target_backbone(x1))
                loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.mark()
    step = None if cpu else times.median_step(warmup)
    return {"lightly": method, "batch": batch, "size": size, "step_s": step, "images_per_s": step and batch / step,
            "loss": float(loss), "peak_gpu_memory_gib": None if cpu else torch.cuda.max_memory_allocated() / 2**30}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="CI smoke run: one step of each Fashion-MNIST recipe")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip what is left after this many seconds")
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/gpu_proof.json on a GPU; "
                                                    "nothing is written with --cpu unless given)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu for the smoke test, or on a GPU machine")
    out = Path(args.out) if args.out else (None if args.cpu else ROOT / "bench" / "results" / "gpu_proof.json")
    datasets = ("fashion_mnist",) if args.cpu else ("cifar10", "imagenet")
    info = card()
    report: Dict[str, Any] = {"card": info, "precision": "32-true" if args.cpu else "bf16-mixed",
                              "compile": args.compile, "steps": args.steps, "warmup": args.warmup,
                              "ours": [], "lightly": [], "skipped": []}
    start = time.perf_counter()

    def save() -> None:
        if out is not None:
            from zoo.atomic import atomic_write_text

            atomic_write_text(out, json.dumps(report, indent=2) + "\n")

    for dataset in datasets:
        for method in METHODS:
            recipe = f"training/recipes/{method}/{dataset}.yaml"
            if time.perf_counter() - start > args.budget_s:
                report["skipped"].append(recipe)
                continue
            row = run_ours(recipe, args.steps, args.warmup, args.cpu, args.compile)
            if info["peak_tflops"] and row["images_per_s"]:
                row["mfu"] = row["images_per_s"] * row["training_flops_per_image"] / (info["peak_tflops"] * 1e12)
            report["ours"].append(row)
            print(json.dumps(row), flush=True)
            save()
    try:
        import lightly  # noqa: F401
    except ImportError:  # a bench extra: pip install -e '.[bench]'
        report["lightly_skipped"] = "lightly is not installed (pip install -e '.[bench]'): no speed ratio"
        print(report["lightly_skipped"], flush=True)
    for method in ("simclr", "byol") if "lightly_skipped" not in report else ():
        batch = 2 if args.cpu else 128
        row = run_lightly(method, batch, 32 if args.cpu else 224, args.steps, args.warmup, args.cpu)
        ours = next((r for r in report["ours"] if r["recipe"] == f"training/recipes/{method}/imagenet.yaml"), None)
        if ours is not None and ours["images_per_s"] and row["images_per_s"]:
            row["ours_over_lightly"] = ours["images_per_s"] / row["images_per_s"]
        report["lightly"].append(row)
        print(json.dumps(row), flush=True)
        save()
    report["seconds"] = round(time.perf_counter() - start, 1)
    save()
    return report


if __name__ == "__main__":
    main()
