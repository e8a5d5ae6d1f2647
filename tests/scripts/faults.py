"""Fault injectors for tests/training/pretrain/test_resume.py, used as Lightning callbacks from a run's YAML config."""

import os
import signal

import pytorch_lightning as pl
import torch


class KillAtStep(pl.Callback):
    """SIGKILL this process in the middle of training step ``step`` (after backward, before the optimizer step),
    when the environment variable ``ZOO_TEST_KILL_AT_STEP`` equals ``step``; inert otherwise, so the same config
    serves the uninterrupted run, the killed run and the resumed run."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if os.environ.get("ZOO_TEST_KILL_AT_STEP") == str(trainer.global_step):
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonWeightsAtStep(pl.Callback):
    """Set one encoder weight to NaN at the start of step ``step`` (the loss of that step becomes NaN)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.encoder.parameters()).view(-1)[0] = float("nan")

