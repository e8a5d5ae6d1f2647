"""Train, evaluate and ship the zoo's built-in weights: every method with its Fashion-MNIST recipe.

``python -m training.ship_weights [--methods yadim simclr ...] [--reuse-runs]`` runs, for each method,

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

import json
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import zoo
from training.downstream.frozen import frozen_evaluation, frozen_features
from training.pretrain.command_line import lightning_cli
from training.pretrain.data import FashionMNISTDataModule
from training.release.export import export_checkpoint, machine
from training.release.publish import publish
from zoo.errors import ZooError
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
                "shipped_by": "python -m training.ship_weights"}
    with tempfile.TemporaryDirectory(prefix="zoo-ship-") as tmp:
        folder = Path(tmp) / name
        export_checkpoint(ckpt=str(ckpt), out=str(folder), name=name, dataset="fashion_mnist", training=training)
        encoder = zoo.load_encoder(folder)
        start = time.perf_counter()
        scores = frozen_evaluation(frozen_features(encoder, zoo.eval_transform(encoder)), dm)
        metrics = {f"fashion_mnist/{p}": round(scores[p]["top1"], 4) for p in ("knn", "linear")}
        how = ("python -m training.ship_weights (k=200, t=0.1 kNN and L-BFGS linear probe on frozen features; "
               "bank/probe: the 60k training images)")
        export_checkpoint(ckpt=str(ckpt), out=str(folder), name=name, dataset="fashion_mnist", overwrite=True,
                          training=training, metrics=metrics, metric_commands={k: how for k in metrics})
        result = publish(str(folder), package=True, registry=str(registry), maintainer=True)
        write_golden(name, Path(registry).parent / name, str(registry))  # features of a fixed batch
    row = {"name": name, **metrics, "train_seconds": round(seconds, 1),
           "eval_seconds": round(time.perf_counter() - start, 1), "sha256": result["sha256"]}
    print(json.dumps(row), flush=True)
    return row


def ship_weights(*, methods: Optional[List[str]] = None, runs: str = "runs/ship", reuse_runs: bool = False,
                 registry: str = str(PACKAGE_REGISTRY), wall_note: str = "") -> int:
    """Train, export, evaluate and publish the shipped Fashion-MNIST encoders into the package (maintainers).

    Args:
        methods: the methods to ship (default: all seven).
        runs: folder for the training runs.
        reuse_runs: use finished runs under ``runs``.
        registry: the weights registry to record into.
        wall_note: what else ran on the machine during training, for cards.
    """
    chosen = list(methods or METHODS)
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown:
        raise ZooError(f"unknown method(s) {unknown}; shipped methods are {', '.join(METHODS)}")
    dm = FashionMNISTDataModule()
    dm.setup()
    rows = [ship(m, Path(runs), reuse_runs, Path(registry), dm, wall_note) for m in chosen]
    print("\n| entry | kNN | linear | train s |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['fashion_mnist/knn']:.4f} | {r['fashion_mnist/linear']:.4f} | {r['train_seconds']} |")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from training.cli import run_function

    return run_function(ship_weights, argv)


if __name__ == "__main__":
    raise SystemExit(main())
