"""The end-to-end demo: train YADIM on Fashion-MNIST -> export -> publish -> ``zoo.load_encoder`` -> downstream table.

``python -m training.demo`` (what ``make demo`` runs). Sized for a 2-core CPU; see README for timings.
Prints kNN (k=200, cosine, exp(sim/0.1) votes) and linear-probe test accuracy for raw pixels, the same
architecture with random weights, and the trained encoder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, List, Optional, TypedDict

import torch

import zoo
from training.downstream.frozen import frozen_evaluation, frozen_features
from training.pretrain import hardware
from training.pretrain.command_line import lightning_cli
from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.fit_cli import Interrupted
from training.pretrain.loop_progress import honours_quiet, reporting
from training.release.export import export_checkpoint, machine
from training.release.publish import publish
from zoo.atomic import atomic_write_text
from zoo.errors import ZooError

RECIPE = Path(__file__).resolve().parent / "recipes" / "yadim" / "fashion_mnist.yaml"
NAME, REPO_ID = "yadim.fashion_mnist", "demo/yadim-fashion-mnist"
# Without native bf16 a CPU trains in fp32 at about half the images/s of a native-bf16 CPU, so the demo trains
# fewer steps there to stay within 10 minutes (README, "The demo on every CPU"); the recipe is otherwise the same.
FP32_CPU_STEPS = 100


def trainer_setting(fit_args: List[str], name: str) -> Optional[str]:
    """``trainer.NAME`` as ``fit`` will see it: the last ``--config`` file that sets it, then the last
    ``--trainer.NAME`` on the command line (the demo's own overrides), as LightningCLI applies them."""
    import yaml

    value, flag = None, f"--trainer.{name}"
    for i, word in enumerate(fit_args):
        if word == "--config" and i + 1 < len(fit_args):
            trainer = (yaml.safe_load(Path(fit_args[i + 1]).read_text()) or {}).get("trainer") or {}
            value = trainer.get(name, value)
        elif word == flag and i + 1 < len(fit_args):
            value = fit_args[i + 1]
        elif word.startswith(flag + "="):
            value = word.split("=", 1)[1]
    return None if value is None else str(value)


def preset(hw: hardware.Hardware, accelerator: Optional[str] = hardware.AUTO) -> tuple[list[str], str]:
    """Extra ``fit`` arguments and the reason, chosen from the capability of the device the recipe trains on
    (``accelerator``: the recipe's ``trainer.accelerator`` with the demo's overrides), like the precision: a CUDA
    card in the machine does not speed up a recipe pinned to the CPU."""
    on_cuda = hardware.uses_cuda(accelerator, hw)
    if on_cuda and not hw.cuda:
        raise ZooError(f"the recipe trains on accelerator {accelerator!r} but torch sees no CUDA device; "
                       "pass --trainer.accelerator cpu to train on the CPU")
    precision, _ = hardware.resolve_precision(hardware.AUTO, "gpu" if on_cuda else "cpu", hw)
    if on_cuda:
        return [], f"the recipe as it is (3 epochs) on {hw.gpu} ({precision})"
    if precision != "32-true":
        return [], f"the recipe as it is (3 epochs) on the CPU: {hw.cpu} runs bf16 natively"
    return (["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(FP32_CPU_STEPS)],
            f"{FP32_CPU_STEPS} steps of 256 images ({FP32_CPU_STEPS * 256 / 60000:.2f} epoch): {hw.cpu} has no native "
            "bf16, so it trains in fp32")


class Row(TypedDict):
    """One representation's line of the demo's table and of results.json."""

    representation: str
    dims: int
    knn: float
    linear: float
    eval_seconds: float


def evaluate(name: str, encode: Callable, dm: FashionMNISTDataModule) -> Row:
    start = time.perf_counter()
    with reporting(prefix=f"[5/5] {name}: "):
        scores = frozen_evaluation(encode, dm)
    return {"representation": name, "dims": scores["dims"], "knn": scores["knn"]["top1"],
            "linear": scores["linear"]["top1"], "eval_seconds": time.perf_counter() - start}


def table(rows: List[Row]) -> str:
    lines = ["| representation | dims | kNN acc | linear acc |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['representation']} | {r['dims']} | {r['knn']:.4f} | {r['linear']:.4f} |")
    return "\n".join(lines)


@honours_quiet
def demo(*, out: str = "demo_out", epochs: Optional[int] = None, data_root: Optional[str] = None,
         download: bool = False, batch_size: Optional[int] = None, quiet: bool = False) -> int:
    """The demo's five steps: train, export, publish, load_encoder, evaluate (see the module docstring).

    Args:
        out: folder for the run, the export and results.json.
        epochs: override the recipe's max_epochs.
        data_root: folder with the Fashion-MNIST IDX files.
        download: download Fashion-MNIST if not found.
        batch_size: override the recipe's batch size.
        quiet: no progress lines on stderr (training's periodic step lines included; ``ZOO_QUIET=1`` does the
            same; when stderr is not a terminal only one final line per stage is printed).
    """
    folder_out = Path(out)
    torch.manual_seed(0)
    dm = FashionMNISTDataModule(root=data_root, download=download)
    dm.setup()

    fit_args = ["fit", "--config", str(RECIPE), "--trainer.default_root_dir", str(folder_out / "run"),
                "--trainer.enable_progress_bar", "false"]
    if epochs is not None:
        extra, why = ["--trainer.max_epochs", str(epochs)], f"{epochs} epochs, as asked"
    else:
        extra, why = preset(hardware.probe(), trainer_setting(fit_args, "accelerator"))
    fit_args += extra
    if data_root:
        fit_args += ["--data.init_args.root", data_root]
    if download:
        fit_args += ["--data.init_args.download", "true"]
    if batch_size is not None:
        fit_args += ["--data.init_args.batch_size", str(batch_size)]
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
    folder = folder_out / NAME
    export_checkpoint(ckpt=ckpt, out=str(folder), name=NAME, dataset="fashion_mnist", overwrite=True,
                      training=training)

    hub, registry = folder_out / "hub", folder_out / "registry.json"
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
    atomic_write_text(folder_out / "results.json", json.dumps(summary, indent=2) + "\n")
    print()
    print(table(rows))
    print()
    print(f"training: {trainer.current_epoch} epochs, {trainer.global_step} steps, {fit_seconds:.0f} s wall, "
          f"{summary['images_per_second']:.0f} images/s ({summary['views_per_second']:.0f} views/s); "
          f"kNN gain over random init: {100 * (trained['knn'] - rows[1]['knn']):+.1f} points")
    print(f"exported encoder: {folder}; published: {hub}/models/{REPO_ID} at {republished['revision'][:12]} "
          f"(zoo.load_encoder({NAME!r}, registry={str(registry)!r})); results: {folder_out / 'results.json'}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from training.cli import run_function

    return run_function(demo, argv)


if __name__ == "__main__":
    raise SystemExit(main())
