"""Progress as a line every few seconds: step, epoch, rate, loss and the ETA of the whole run.

Lightning's bar reports one epoch and redraws in place, which a log file or ``make demo | tee`` turns into
noise. This line reads the same in a terminal and in a log.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

import pytorch_lightning as pl

from training.pretrain.loop_progress import current, duration  # duration: explore's runner uses it too


class ProgressLine(pl.Callback):
    """Every ``every_seconds`` (and at the end of each epoch) print the step, views/s, loss and ETA."""

    def __init__(self, every_seconds: float = 10.0, stream: Optional[TextIO] = None) -> None:
        self.every_seconds = every_seconds
        self.stream = stream
        self._start = self._last = 0.0
        self._first_step = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.perf_counter()
        self._first_step = trainer.global_step
        if trainer.is_global_zero:
            self._print(f"training: {self._total(trainer)} optimizer steps"
                        + (f", resuming at step {trainer.global_step}" if trainer.global_step else ""))

    @staticmethod
    def _total(trainer: pl.Trainer) -> int:
        return max(1, int(trainer.estimated_stepping_batches))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if now - self._last >= self.every_seconds and trainer.is_global_zero and not current().silenced():
            self._last = now
            self._print(self.line(trainer, batch, now))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("loss", "knn_acc")}
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
            self._print(f"epoch {trainer.current_epoch + 1} done at step {trainer.global_step} after "
                        f"{duration(time.perf_counter() - self._start)}" + (f": {shown}" if shown else ""))

    def line(self, trainer: pl.Trainer, batch: Any, now: float) -> str:
        done = trainer.global_step - self._first_step
        total = self._total(trainer)
        elapsed = now - self._start
        per_step = elapsed / max(1, done)
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        batch_size = int(getattr(images, "shape", [0])[0]) * max(1, trainer.world_size)
        loss = trainer.callback_metrics.get("loss")
        loss_text = f", loss {float(loss):.4f}" if loss is not None else ""
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        return (f"step {trainer.global_step}/{total} ({100 * trainer.global_step / total:.0f}%), "
                f"epoch {trainer.current_epoch + 1}{epochs}: {per_step:.2f} s/step, "
                f"{batch_size / per_step:.0f} images/s{loss_text}, "
                f"ETA {duration(per_step * (total - trainer.global_step))}")
