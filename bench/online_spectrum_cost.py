"""What ``OnlineSpectrum`` adds to a Fashion-MNIST pre-training epoch (a benchmark, not a test).

``python bench/online_spectrum_cost.py [--recipe training/recipes/simclr/fashion_mnist.yaml] [--steps 20]
[--out bench/results/online_spectrum_cost.json]``

The recipe's module and datamodule take ``--steps`` training steps (the first 5 untimed) in bf16 autocast, what
the recipe's precision auto picks on a CPU with native bf16; an epoch's training time is the per-step time times
the epoch's steps. Then the epoch-end
work of ``OnlineKNN`` (bank + test features, kNN) and of ``OnlineSpectrum`` (test features, RankMe and alpha-ReQ)
is timed on the trained module, each hook run alone. Reported: seconds of each and their share of an epoch. The
claim to check: ``OnlineSpectrum`` costs at most about half of ``OnlineKNN`` (half the images, no kNN) and a few
per cent of an epoch, cheap enough to leave on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import yaml

from training.downstream.online import OnlineKNN
from training.downstream.online_spectrum import OnlineSpectrum
from training.pretrain.data import FashionMNISTDataModule
from training.pretrain.loop_progress import reporting
from training.pretrain.module import ContrastiveModule
from zoo.atomic import atomic_write_text


class Clock(pl.Callback):
    """Seconds from the start of training batch ``warm`` (after the first steps' one-off costs) to the last
    batch's end."""

    def __init__(self, warm: int) -> None:
        self.warm, self.start, self.end = warm, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warm:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def hook_seconds(callback: pl.Callback, module: ContrastiveModule, datamodule) -> float:
    """One epoch-end call of ``callback`` on ``module`` (logging stubbed: no trainer loop is running)."""
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    trainer = SimpleNamespace(current_epoch=0, sanity_checking=False, datamodule=datamodule)
    start = time.perf_counter()
    callback.on_train_epoch_end(trainer, module)  # type: ignore[arg-type]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="training/recipes/simclr/fashion_mnist.yaml")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--out", default="bench/results/online_spectrum_cost.json")
    args = parser.parse_args()
    recipe = yaml.safe_load(Path(args.recipe).read_text())
    pl.seed_everything(0)
    module = ContrastiveModule(**recipe["model"])
    data = FashionMNISTDataModule(**recipe["data"]["init_args"])
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=args.steps, accelerator="cpu", precision="bf16-mixed"
                         if recipe["trainer"].get("precision") == "auto" else recipe["trainer"]["precision"],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         logger=False, num_sanity_val_steps=0, callbacks=[clock := Clock(warm=5)])
    data.setup()
    steps_per_epoch = len(data.split("pretrain")) // data.batch_size
    with reporting(quiet=True):
        trainer.fit(module, datamodule=data)
        step = (clock.end - clock.start) / (args.steps - clock.warm)
        knn = hook_seconds(OnlineKNN(), module, data)
        spectrum = hook_seconds(OnlineSpectrum(), module, data)
    epoch = step * steps_per_epoch
    result = {"recipe": args.recipe, "precision": str(trainer.precision), "steps_timed": args.steps - clock.warm,
              "seconds_per_step": round(step, 3), "epoch_seconds_estimate": round(epoch, 1),
              "online_knn_seconds": round(knn, 2), "online_spectrum_seconds": round(spectrum, 2),
              "online_knn_share_of_epoch": round(knn / epoch, 4),
              "online_spectrum_share_of_epoch": round(spectrum / epoch, 4)}
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
