"""Train, evaluate and ship the zoo's built-in weights: every method with its Fashion-MNIST recipe.

``python -m training.release.ship_weights [--methods yadim simclr ...] [--reuse-runs]`` runs, for each method,

1. ``python -m training fit --config training/recipes/METHOD/fashion_mnist.yaml`` (timed; ``--reuse-runs`` takes
   an existing run under ``--runs`` and its recorded wall time instead of training again),
2. export of the last checkpoint, loaded back with ``zoo.load_encoder``,
3. our frozen-feature evaluation on the Fashion-MNIST test split (kNN k=200 and a linear probe, bank/probe on
   the 60k training images),
4. ``publish --package --maintainer``: the folder goes to ``zoo/_weights/METHOD.fashion_mnist`` (with
   ``golden.safetensors``, see ``zoo.pretrained.golden``) and the entry, with the measured accuracies and how it
   was trained, into the package weights registry (this tool is the maintainers' way to write into the package).

Maintainers run this; it is not part of the tests or the demo (about 5 minutes per method on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import zoo
from training.cli import lightning_cli
from training.downstream.frozen import evaluate_frozen, frozen_features
from training.pretrain.data import FashionMNISTDataModule
from training.release.export import export_checkpoint, machine
from training.release.publish import publish
from zoo.pretrained.golden import write_golden
from zoo.pretrained.weights_registry import PACKAGE_REGISTRY

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
METHODS = ["yadim", "simclr", "moco_v2", "byol", "swav", "amdim", "cpc_v2"]


def recipe_path(method: str) -> Path:
    return RECIPES / method / "fashion_mnist.yaml"


def train(method: str, runs: Path) -> float:
    args = ["fit", "--config", str(recipe_path(method)), "--trainer.default_root_dir", str(runs / method),
            "--trainer.enable_progress_bar", "false"]
    start = time.perf_counter()
    lightning_cli(args)
    seconds = time.perf_counter() - start
    with open(runs / "timings.jsonl", "a") as log:
        log.write(json.dumps({"method": method, "rc": 0, "wall_seconds": seconds}) + "\n")
    return seconds


def recorded_wall_seconds(method: str, runs: Path) -> Optional[float]:
    log = runs / "timings.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    done = [r["wall_seconds"] for r in rows if r["method"] == method and r.get("rc") == 0]
    return done[-1] if done else None


def last_checkpoint(method: str, runs: Path) -> Path:
    found = sorted((runs / method).glob("lightning_logs/version_*/checkpoints/last.ckpt"),
                   key=lambda p: int(p.parts[-3].split("_")[1]))
    if not found:
        raise SystemExit(f"no last.ckpt under {runs / method}; train first (drop --reuse-runs)")
    return found[-1]


def ship(method: str, runs: Path, reuse: bool, registry: Path, dm: FashionMNISTDataModule,
         note: str = "") -> Dict[str, object]:
    seconds = recorded_wall_seconds(method, runs) if reuse else None
    if seconds is None:
        seconds = train(method, runs)
    ckpt = last_checkpoint(method, runs)
    name = f"{method}.fashion_mnist"
    training = {"recipe": f"training/recipes/{method}/fashion_mnist.yaml",
                "command": f"python -m training fit --config training/recipes/{method}/fashion_mnist.yaml",
                "wall_seconds": round(seconds, 1), "machine": machine(),
                **({"wall_seconds_note": note} if note else {}),
                "shipped_by": "python -m training.release.ship_weights"}
    with tempfile.TemporaryDirectory(prefix="zoo-ship-") as tmp:
        folder = Path(tmp) / name
        export_checkpoint(ckpt=str(ckpt), out=str(folder), name=name, dataset="fashion_mnist", training=training)
        encoder = zoo.load_encoder(folder)
        start = time.perf_counter()
        scores = evaluate_frozen(frozen_features(encoder, zoo.eval_transform(encoder)), dm)
        metrics = {"fashion_mnist/knn": round(scores["knn"], 4), "fashion_mnist/linear": round(scores["linear"], 4)}
        how = ("python -m training.release.ship_weights (k=200, t=0.1 kNN and L-BFGS linear probe on frozen features; "
               "bank/probe: the 60k training images)")
        export_checkpoint(ckpt=str(ckpt), out=str(folder), name=name, dataset="fashion_mnist", overwrite=True,
                          training=training, metrics=metrics, metric_commands={k: how for k in metrics})
        result = publish(str(folder), package=True, registry=str(registry), maintainer=True)
        write_golden(name, Path(registry).parent / name, str(registry))  # features of a fixed batch
    row = {"name": name, **metrics, "train_seconds": round(seconds, 1),
           "eval_seconds": round(time.perf_counter() - start, 1), "sha256": result["sha256"]}
    print(json.dumps(row), flush=True)
    return row


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--runs", default="runs/ship", help="folder for the training runs")
    parser.add_argument("--reuse-runs", action="store_true", help="use finished runs under --runs")
    parser.add_argument("--registry", default=str(PACKAGE_REGISTRY), help="the weights registry to record into")
    parser.add_argument("--wall-note", default="", help="what else ran on the machine during training, for cards")
    args = parser.parse_args(argv)
    dm = FashionMNISTDataModule()
    dm.setup()
    rows = [ship(m, Path(args.runs), args.reuse_runs, Path(args.registry), dm, args.wall_note) for m in args.methods]
    print("\n| entry | kNN | linear | train s |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['fashion_mnist/knn']:.4f} | {r['fashion_mnist/linear']:.4f} | {r['train_seconds']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
