"""The end-to-end demo: train YADIM on Fashion-MNIST -> export -> publish -> ``zoo.load_encoder`` -> downstream table.

``python -m training.demo`` (what ``make demo`` runs). Sized for a 2-core CPU; see README for timings.
Prints kNN (k=200, cosine, exp(sim/0.1) votes) and linear-probe test accuracy for raw pixels, the same
architecture with random weights, and the trained encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

import zoo
from training.cli import lightning_cli
from training.downstream.frozen import evaluate_frozen, frozen_features
from training.pretrain import hardware
from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.fit_cli import Interrupted
from training.release.export import export_checkpoint, machine
from training.release.publish import publish
from zoo.atomic import atomic_write_text
from zoo.errors import ZooError

RECIPE = Path(__file__).resolve().parent / "recipes" / "yadim" / "fashion_mnist.yaml"
NAME, REPO_ID = "yadim.fashion_mnist", "demo/yadim-fashion-mnist"
# Without native bf16 a CPU trains in fp32 at about half the images/s of a native-bf16 CPU, so the demo trains
# fewer steps there to stay within 10 minutes (README, "The demo on every CPU"); the recipe is otherwise the same.
FP32_CPU_STEPS = 100


def preset(hw: hardware.Hardware) -> tuple[list[str], str]:
    """Extra ``fit`` arguments for this machine and the reason, chosen from the hardware like the precision."""
    precision, _ = hardware.resolve_precision(hardware.AUTO, "cpu", hw)
    if hw.cuda or precision != "32-true":
        return [], "the recipe as it is (3 epochs)"
    return (["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(FP32_CPU_STEPS)],
            f"{FP32_CPU_STEPS} steps of 256 images ({FP32_CPU_STEPS * 256 / 60000:.2f} epoch): {hw.cpu} has no native "
            "bf16, so it trains in fp32")


def evaluate(name: str, encode: Callable, dm: FashionMNISTDataModule) -> Dict[str, object]:
    start = time.perf_counter()
    scores = evaluate_frozen(encode, dm)
    return {"representation": name, **scores, "eval_seconds": time.perf_counter() - start}


def table(rows: List[Dict[str, object]]) -> str:
    lines = ["| representation | dims | kNN acc | linear acc |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['representation']} | {r['dims']} | {r['knn']:.4f} | {r['linear']:.4f} |")
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="folder for the run, the export and results.json")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's max_epochs")
    parser.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--download", action="store_true", help="download Fashion-MNIST if not found")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ZooError as err:  # a missing dataset, a failed download, a full disk: one line, as the commands do
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2


def run(args: argparse.Namespace) -> int:
    """The demo's five steps (see the module docstring)."""
    out = Path(args.out)
    torch.manual_seed(0)
    dm = FashionMNISTDataModule(root=args.data_root, download=args.download)
    dm.setup()

    fit_args = ["fit", "--config", str(RECIPE), "--trainer.default_root_dir", str(out / "run"),
                "--trainer.enable_progress_bar", "false"]
    extra, why = preset(hardware.probe())
    if args.epochs is not None:
        extra, why = ["--trainer.max_epochs", str(args.epochs)], f"{args.epochs} epochs, as asked"
    fit_args += extra
    if args.data_root:
        fit_args += ["--data.init_args.root", args.data_root]
    if args.download:
        fit_args += ["--data.init_args.download", "true"]
    if args.batch_size is not None:
        fit_args += ["--data.init_args.batch_size", str(args.batch_size)]
    print(f"[1/5] training, {why}: python -m training {' '.join(fit_args)}", flush=True)
    start = time.perf_counter()
    try:
        cli = lightning_cli(fit_args)
    except Interrupted as stop:
        print(f"error: {stop}", flush=True)
        return stop.code
    fit_seconds = time.perf_counter() - start
    trainer = cli.trainer
    images_seen = trainer.global_step * cli.datamodule.batch_size
    ckpt = trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    training = {"wall_seconds": round(fit_seconds, 1), "machine": machine(),
                "command": "make demo (python -m training.demo)"}

    print(f"[2/5] exporting {ckpt}", flush=True)
    folder = out / NAME
    export_checkpoint(ckpt=ckpt, out=str(folder), name=NAME, dataset="fashion_mnist", overwrite=True,
                      training=training)

    hub, registry = out / "hub", out / "registry.json"
    print(f"[3/5] publishing to the local directory hub {hub} (repo {REPO_ID}; registry {registry})", flush=True)
    published = publish(str(folder), repo_id=REPO_ID, to=str(hub), registry=str(registry))
    print(f"      commit {published['revision']}", flush=True)

    print(f"[4/5] zoo.load_encoder({NAME!r}, registry={str(registry)!r})", flush=True)
    encoder = zoo.load_encoder(NAME, registry=registry)
    preprocess = zoo.eval_transform(encoder)
    with torch.random.fork_rng():  # the baseline's weights depend on this seed only, not on what training drew
        torch.manual_seed(0)
        random_encoder = zoo.load_encoder(NAME, pretrained=False, registry=registry)

    print("[5/5] evaluating on the Fashion-MNIST test set (kNN bank and probe: the 60k training images)", flush=True)
    mean, std = encoder.zoo_config["input"]["mean"][0], encoder.zoo_config["input"]["std"][0]
    rows = [
        evaluate("raw pixels (28x28, normalised)", lambda x: ((x.float() / 255 - mean) / std).flatten(1), dm),
        evaluate("random-init encoder (same architecture)", frozen_features(random_encoder, preprocess), dm),
        evaluate("YADIM-trained encoder (zoo.load_encoder)", frozen_features(encoder, preprocess), dm),
    ]
    trained = rows[-1]
    # the measured accuracies go into the card and the registry: a second commit in the local hub
    export_checkpoint(ckpt=ckpt, out=str(folder), name=NAME, dataset="fashion_mnist", overwrite=True,
                      training=training, metrics={"fashion_mnist/knn": round(trained["knn"], 4),
                                                  "fashion_mnist/linear": round(trained["linear"], 4)})
    republished = publish(str(folder), repo_id=REPO_ID, to=str(hub), registry=str(registry),
                          message="Record the demo's measured accuracies")
    summary = {
        "epochs": trainer.current_epoch, "steps": trainer.global_step, "train_seconds": fit_seconds,
        "images_per_second": images_seen / fit_seconds, "views_per_second": 2 * images_seen / fit_seconds,
        "rows": rows,
    }
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    print()
    print(table(rows))
    print()
    print(f"training: {trainer.current_epoch} epochs, {trainer.global_step} steps, {fit_seconds:.0f} s wall, "
          f"{summary['images_per_second']:.0f} images/s ({summary['views_per_second']:.0f} views/s); "
          f"kNN gain over random init: {100 * (trained['knn'] - rows[1]['knn']):+.1f} points")
    print(f"exported encoder: {folder}; published: {hub}/models/{REPO_ID} at {republished['revision'][:12]} "
          f"(zoo.load_encoder({NAME!r}, registry={str(registry)!r})); results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
