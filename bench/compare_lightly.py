"""Ours vs lightly 1.6.0 on the same job, side by side (a benchmark, not a test; lightly is a bench extra).

``python bench/compare_lightly.py [--epochs 1] [--train-subset N] [--precision auto] [--out FILE.json]``

Fashion-MNIST (grey replicated to 3 channels, 32x32), torchvision resnet18 with its standard stem, batch 256,
2 threads, SimCLR and BYOL with the same augmentation parameters, heads, optimizer (Adam, constant lr, no weight
decay), epochs, precision and memory format on both sides:

- ours: the recipe path, ``training.pretrain.module.ContrastiveModule`` in a Lightning ``Trainer`` (uint8 images
  in memory, batched augmentation on the training device);
- lightly: a plain training loop built from lightly's own blocks (``SimCLRTransform`` / ``BYOLTransform`` per
  sample on PIL images through a ``DataLoader``, ``SimCLRProjectionHead`` + ``NTXentLoss``,
  ``BYOLProjectionHead`` / ``BYOLPredictionHead`` + ``NegativeCosineSimilarity`` + ``update_momentum``);
- the ceiling (``bench/ceiling.py``): the same encoder, heads and optimizer stepping on views already made,
  measured right before and right after each side, so that each side's ``ceiling_fraction`` (its views/s over the
  mean of the two) compares figures of the same minutes.

Precision and memory format are what ``auto`` resolves to on this machine (``training.pretrain.hardware``: fp32 on CPUs
without native bf16, bf16 autocast on those with it; channels-last), for both sides; ``--precision`` and
``--channels-last`` force others. Each side runs in its own process (so peak RSS is its own). Reported: views/s
(median over training steps after 3 warm-up steps, wall time between consecutive steps, so data loading and
augmentation are included), peak RSS, test kNN accuracy (k=200, cosine, exp(sim/0.1); same code both sides) after
each epoch, the ceiling, and the CPU with whether it runs bf16 natively.

Both sides start from the same weights (``--init same``, the default): the parent draws the backbone and heads
once at the seed (``bench/ceiling.py``'s modules) and each side copies them into its own modules, entry by entry in
order, shapes checked. Randomly initialised ResNet-18s alone differ by several kNN points, more than 60 steps of
training move them, so without this a kNN difference between the sides mostly measures two draws of the
initial weights. ``--init own`` lets each side draw its own, as before.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

MEAN, STD = [0.2860] * 3, [0.3530] * 3
# BYOL's EMA starts at tau 0.99 on both sides (lightly's cosine_schedule(step, total, 0.99, 1.0) in the loop below,
# byol_tau with base 0.99 on ours, as our Fashion-MNIST recipe does), rising to 1.0 on the same cosine.
HEADS = {"simclr": dict(head_hidden=512, head_out=128), "byol": dict(projector_hidden=1024, projector_out=256,
                                                                      predictor_hidden=1024, base_tau=0.99)}


def fashion_mnist(train_subset: int, bank_subset: int, test_subset: int):
    from training.pretrain.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(train_subset=train_subset or None, knn_bank_subset=bank_subset or None)
    test = dm.split("test")
    if test_subset and test_subset < len(test):
        keep = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))[:test_subset]
        test = type(test)(test.images[keep], test.labels[keep])
    return dm, dm.split("pretrain"), dm.split("train"), test


def _entries(module: torch.nn.Module) -> List[torch.Tensor]:
    return [t for name, t in module.state_dict().items() if not name.endswith("num_batches_tracked")]


def write_initial_weights(method: str, seed: int, path: str) -> None:
    """Backbone and heads drawn once at ``seed``, saved as one list of tensors per module."""
    from ceiling import backbone, heads

    torch.manual_seed(seed)
    torch.save([_entries(m) for m in (backbone(), *heads(method))], path)


@torch.no_grad()
def load_initial_weights(modules: List[torch.nn.Module], path: Optional[str]) -> None:
    """Copy the shared initial weights into ``modules`` (backbone, then heads), in state-dict order."""
    if not path:
        return
    saved = torch.load(path)
    if len(saved) != len(modules):
        raise SystemExit(f"initial weights hold {len(saved)} modules, this side has {len(modules)}")
    for i, (module, tensors) in enumerate(zip(modules, saved, strict=True)):
        mine = _entries(module)
        shapes = [tuple(t.shape) for t in mine], [tuple(t.shape) for t in tensors]
        if shapes[0] != shapes[1]:
            raise SystemExit(f"module {i} ({type(module).__name__}) does not match the shared initial weights: "
                             f"{shapes[0]} vs {shapes[1]}")
        for target, value in zip(mine, tensors, strict=True):
            target.copy_(value)


@torch.no_grad()
def knn(backbone: torch.nn.Module, bank, test) -> float:
    from training.downstream.frozen import knn_accuracy
    from zoo.parts.augment import eval_preprocess

    backbone.eval()

    def feats(data):
        out = [backbone(eval_preprocess(data.images[i:i + 512], (32, 32), MEAN, STD, channels=3)).float()
               for i in range(0, len(data), 512)]
        return torch.cat(out), data.labels

    acc = knn_accuracy(feats(bank), feats(test), k=200, temperature=0.1)
    backbone.train()
    return acc


def run_ours(method: str, args) -> Dict:
    import pytorch_lightning as pl

    from training.pretrain.module import ContrastiveModule

    dm, _, bank, test = fashion_mnist(args.train_subset, args.bank_subset, args.test_subset)
    dm.batch_size = args.batch_size
    aug = dict(size=32, mean=MEAN, std=STD, channels=3)
    if method == "simclr":
        aug.update(strength=0.5, blur_prob=0.0)
    module = ContrastiveModule(method=method, augment=aug, extract=HEADS[method],
                               encoder=dict(name="resnet", arch="resnet18", in_channels=3, small_image_stem=False),
                               similarity=dict(temperature=0.5) if method == "simclr" else None,
                               optimizer="adam", lr=args.lr, schedule="constant",
                               channels_last=args.channels_last == "true")
    ex = module.extract
    online = [module.encoder, ex.head] if method == "simclr" else [module.encoder, ex.projector, ex.predictor]
    load_initial_weights(online, args.init_file)
    if method == "byol" and args.init_file:  # the target starts as a copy of the online backbone and projector
        ex.teacher.update([module.encoder, ex.projector], 0.0)
    times: List[float] = []
    knns: List[float] = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            times.append(time.perf_counter())

        def on_train_epoch_end(self, trainer, pl_module):
            knns.append(knn(pl_module.encoder, bank, test))

    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, precision=args.precision,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Probe()])
    trainer.fit(module, datamodule=dm)
    return summary(times, 2 * args.batch_size, knns)


def run_lightly(method: str, args) -> Dict:
    import torchvision
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform, SimCLRTransform
    from lightly.utils.scheduler import cosine_schedule
    from PIL import Image

    _, train, bank, test = fashion_mnist(args.train_subset, args.bank_subset, args.test_subset)
    norm = {"mean": MEAN, "std": STD}
    if method == "simclr":
        transform = SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0, normalize=norm)
    else:
        transform = BYOLTransform(BYOLView1Transform(input_size=32, normalize=norm),
                                  BYOLView2Transform(input_size=32, normalize=norm))

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return len(train)

        def __getitem__(self, i):
            return transform(Image.fromarray(train.images[i, 0].numpy(), mode="L").convert("RGB"))

    loader = torch.utils.data.DataLoader(Views(), batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.lightly_workers,
                                         worker_init_fn=lambda _: seed_numpy(torch.initial_seed()))
    backbone = torchvision.models.resnet18()
    backbone.fc = torch.nn.Identity()
    if method == "simclr":
        head = SimCLRProjectionHead(512, HEADS["simclr"]["head_hidden"], HEADS["simclr"]["head_out"])
        load_initial_weights([backbone, head], args.init_file)
        criterion, params = NTXentLoss(temperature=0.5), list(backbone.parameters()) + list(head.parameters())
        target_backbone = target_head = predictor = None
    else:
        h = HEADS["byol"]
        head = BYOLProjectionHead(512, h["projector_hidden"], h["projector_out"])
        predictor = BYOLPredictionHead(h["projector_out"], h["predictor_hidden"], h["projector_out"])
        load_initial_weights([backbone, head, predictor], args.init_file)
        import copy

        target_backbone, target_head = copy.deepcopy(backbone), copy.deepcopy(head)
        deactivate_requires_grad(target_backbone)
        deactivate_requires_grad(target_head)
        criterion = NegativeCosineSimilarity()
        params = list(backbone.parameters()) + list(head.parameters()) + list(predictor.parameters())

    def lightly_loss(x0, x1):
        if method == "simclr":
            return criterion(head(backbone(x0)), head(backbone(x1)))
        tau = cosine_schedule(step, total, 0.99, 1.0)
        update_momentum(backbone, target_backbone, tau)
        update_momentum(head, target_head, tau)
        p0, p1 = predictor(head(backbone(x0))), predictor(head(backbone(x1)))
        with torch.no_grad():
            z0, z1 = target_head(target_backbone(x0)), target_head(target_backbone(x1))
        return 0.5 * (criterion(p0, z1) + criterion(p1, z0))

    opt = torch.optim.Adam(params, lr=args.lr)
    fmt = torch.channels_last if args.channels_last == "true" else torch.contiguous_format
    for module in (backbone, head) if method == "simclr" else (backbone, head, predictor, target_backbone,
                                                               target_head):
        module.to(memory_format=fmt)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16-mixed"
                else contextlib.nullcontext())
    times, knns, step, total = [], [], 0, args.epochs * len(loader)
    for _ in range(args.epochs):
        for views in loader:
            x0, x1 = views[0].contiguous(memory_format=fmt), views[1].contiguous(memory_format=fmt)
            with autocast:
                loss = lightly_loss(x0, x1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            times.append(time.perf_counter())
        knns.append(knn(backbone, bank, test))
    return summary(times, 2 * args.batch_size, knns)


def seed_numpy(seed: int) -> None:
    """lightly's GaussianBlur and RandomSolarization draw from numpy's global generator, which torch's seed leaves
    alone (and which DataLoader workers would otherwise inherit as identical copies)."""
    import numpy as np

    np.random.seed(seed % 2**32)


def summary(times: List[float], views_per_step: int, knns: List[float]) -> Dict:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)][3:] or [b - a for a, b in zip(times, times[1:], strict=False)]
    return {"views_per_s": views_per_step / statistics.median(gaps), "steps": len(times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "knn": knns}


def resolve_settings(args) -> None:
    """``auto`` precision and memory format resolved as ``python -m training fit`` would on this CPU."""
    from training.pretrain import hardware

    args.precision = str(hardware.resolve_precision(args.precision, "cpu", hardware.probe())[0])
    args.channels_last = str(hardware.resolve_channels_last(args.channels_last)[0]).lower()


def child(passthrough: List[str], side: str, method: str, init_file: Optional[str] = None) -> Optional[Dict]:
    """Run one side in its own process (its own peak RSS); None, with its stderr shown, if it failed."""
    start = time.perf_counter()
    extra = ["--init-file", init_file] if init_file else []
    proc = subprocess.run([sys.executable, __file__, *passthrough, "--child", side, method, *extra],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    return {**json.loads(lines[-1][7:]), "wall_s": time.perf_counter() - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=0, help="pre-train on this many images (0: all 60k)")
    parser.add_argument("--bank-subset", type=int, default=10000, help="kNN bank size (0: all 60k)")
    parser.add_argument("--test-subset", type=int, default=0, help="kNN test images (0: all 10k)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lightly-workers", type=int, default=0, help="DataLoader workers on lightly's side")
    parser.add_argument("--methods", nargs="+", default=["simclr", "byol"], choices=["simclr", "byol"])
    parser.add_argument("--seed", type=int, default=0, help="torch seed of both sides (initialisation, order, views)")
    parser.add_argument("--init", default="same", choices=["same", "own"],
                        help="same: both sides start from one draw of the weights at --seed; own: each draws its own")
    parser.add_argument("--precision", default="auto", choices=["auto", "32-true", "bf16-mixed"],
                        help="both sides' precision (auto: training.pretrain.hardware's choice for this CPU)")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"],
                        help="both sides' memory format (auto: training.pretrain.hardware's choice)")
    parser.add_argument("--ceiling-steps", type=int, default=20, help="steps of each ceiling run (before and after each side); 0: no ceiling")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--init-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    resolve_settings(args)
    if args.child:
        side, method = args.child
        torch.manual_seed(args.seed)
        seed_numpy(args.seed)
        if side == "ceiling":
            from ceiling import measure

            result = measure(method, args.batch_size, precision=args.precision,
                             channels_last=args.channels_last == "true", steps=args.ceiling_steps, lr=args.lr)
        else:
            result = (run_ours if side == "ours" else run_lightly)(method, args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    passthrough = [a for a in sys.argv[1:] if a not in ("--out", args.out)]
    passthrough += ["--precision", args.precision, "--channels-last", args.channels_last]
    results: Dict[str, Dict] = {}
    scratch = tempfile.mkdtemp(prefix="compare_lightly_")
    for method in args.methods:
        results[method] = {}
        init_file = None
        if args.init == "same":
            init_file = os.path.join(scratch, f"{method}_init.pt")
            write_initial_weights(method, args.seed, init_file)
        for side in ("ours", "lightly"):
            # the ceiling right before and right after the side: on a shared VM the speed drifts by 10-20% over
            # minutes, so one side is compared with the mean of the two ceilings that bracket it
            ceiling = args.ceiling_steps > 0  # 0: no ceiling runs (seed repeats that only need kNN)
            before = child(passthrough, "ceiling", method) if ceiling else {}
            result = child(passthrough, side, method, init_file)
            after = child(passthrough, "ceiling", method) if ceiling else {}
            if before is None or result is None or after is None:
                return 1
            if ceiling:
                result["ceiling_runs_views_per_s"] = [before["views_per_s"], after["views_per_s"]]
                result["ceiling_views_per_s"] = (before["views_per_s"] + after["views_per_s"]) / 2
            result["ceiling_fraction"] = (result["views_per_s"] / result["ceiling_views_per_s"]) if ceiling else None
            results[method][side] = result
            print(method, side, json.dumps(result), flush=True)
        ours, theirs = results[method]["ours"], results[method]["lightly"]
        results[method]["ratio_views_per_s"] = ours["views_per_s"] / theirs["views_per_s"]
        results[method]["ratio_peak_rss"] = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
        results[method]["knn_diff_last_epoch"] = ours["knn"][-1] - theirs["knn"][-1]
    from training.pretrain.hardware import cpu_name, native_cpu_bf16

    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("child", "out", "init_file")}
    results["machine"] = {"cpu": cpu_name(), "native_bf16": native_cpu_bf16(), "torch": torch.__version__,
                          "threads": args.threads}
    print(json.dumps({m: {**{k: v for k, v in r.items() if k.startswith(("ratio", "knn_diff"))},
                          **{f"{side}_ceiling_fraction": r[side]["ceiling_fraction"] for side in ("ours", "lightly")}}
                      for m, r in results.items() if m in args.methods}, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    if args.out:
        tmp = Path(args.out).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
