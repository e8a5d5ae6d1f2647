"""Crash-safe pre-training: atomic checkpoints, and everything a resumed run needs to continue bit-for-bit.

A run killed at any instant (SIGKILL, pre-emption, power cut) continues with
``python -m training fit --config run.yaml --ckpt_path last`` and ends with the weights of the run that was never
interrupted. What makes that hold:

- Lightning's checkpoint: weights, EMA teachers, queues and prototypes (module state), optimizer, scheduler,
  loop counters (epoch, step, batch within the epoch);
- ``training.pretrain.batches.ResumableBatches``: the data order and the batches already served this epoch;
- ``ResumableTraining`` (this module, added to every ``python -m training fit``): the random number generators
  that draw the augmentations, saved with every checkpoint and restored before the first resumed step, and
  checkpoint files written atomically (``AtomicCheckpointIO``), so a kill while saving leaves the previous
  checkpoint intact rather than a truncated one.

The files a run writes (checkpoints, ``config.yaml``) go through ``run_file``: written atomically, and a full disk
is one ``ZooError`` naming the file, which is left as it was.
"""

from __future__ import annotations

import errno
import random
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, Optional

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from training.pretrain.batches import ResumableBatches
from zoo.atomic import atomic_file
from zoo.checkpoint_file import UnreadableCheckpoint, read_checkpoint_file
from zoo.errors import ZooError, first_line


def disk_full(err: Optional[BaseException]) -> bool:
    """Whether ``err``, or an error it was raised from or while handling, is a full disk or an exhausted quota
    (``torch.save`` reports a full disk as a RuntimeError raised while handling the OSError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def run_file(path: Any, then: str, mode: str = "wb") -> Iterator[IO]:
    """``zoo.atomic.atomic_file`` for a file the run writes: on a full disk, one ``ZooError`` naming the file and
    what to do ``then``; the file keeps its previous content (or does not exist) and no temporary file is left."""
    path = Path(path)
    try:
        with atomic_file(path, mode) as handle:
            yield handle
    except Exception as err:
        if disk_full(err):
            raise ZooError(f"no space left on the device of {path.parent} while writing {path.name}; it was not "
                           f"written (an earlier one of that name is intact): free some space, then {then}") from None
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Local checkpoints go to a temporary file beside the target, are fsynced, then renamed over it.

    Reading always uses ``torch.load(weights_only=True)``: a checkpoint cannot run code when it is resumed. Local
    files are read memory-mapped (``mmap=True``; the copy-on-write mapping leaves the file untouched). Remote paths (``s3://`` ...) are left to Lightning's fsspec writer.
    """

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        with run_file(path, then="resume with --ckpt_path last") as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(self, path, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> Dict[str, Any]:
        if "://" not in str(path):
            return read_local_checkpoint(path, map_location)
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except Exception as err:  # missing, truncated, or carrying code: one line, not an unpickler traceback
            raise unreadable(path, err) from None


def unreadable(path: Any, err: BaseException) -> ZooError:
    reason = err.reason if isinstance(err, UnreadableCheckpoint) else first_line(err)
    return ZooError(f"cannot resume from {path}: not a readable checkpoint (loaded with weights_only=True): "
                    f"{reason}")


def read_local_checkpoint(path: Any, map_location: Optional[Any] = None, load: Optional[Callable] = None) -> Any:
    """A local checkpoint file, memory-mapped: the weights are copied into the model and the optimizer state is
    paged in as it is used, so resuming does not hold a second full copy of the run in memory (a 666 M-parameter
    AMDIM with Adam is 8 GB on disk), and reading its hyper-parameters pages in nothing. ``load`` is the
    ``torch.load`` to call (``ZooCLI`` passes the real one while it stands in for it). One ``ZooError`` for a file
    that is missing, truncated, in the legacy non-zip format, or carries code."""
    try:
        return read_checkpoint_file(path, map_location=map_location, mmap=True, load=load)
    except UnreadableCheckpoint as err:
        raise unreadable(path, err) from None


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableTraining(pl.Callback):
    """Saves the RNG state in every checkpoint and restores it on resume; installs ``AtomicCheckpointIO``.

    Lightning runs checkpoint callbacks after all others, so the state saved with a checkpoint is the state after
    the step it records, and it is put back in ``on_train_start``, after the checkpoint is loaded and right
    before the first resumed step. (Under DDP all processes share rank 0's state, as after ``seed_everything``.)
    """

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, Any]] = None
        self._trainer: Optional[pl.Trainer] = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:  # a user's own CheckpointIO is left alone
            strategy.checkpoint_io = AtomicCheckpointIO()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        settings = getattr(trainer, "zoo_settings", None)
        if settings:  # the precision and memory format chosen for this hardware, and why (training.pretrain.hardware)
            checkpoint["zoo_settings"] = dict(settings)

    def state_dict(self) -> Dict[str, Any]:
        state = {"rng": rng_state()}
        batches = self._batches()
        if batches is not None:
            state["batches"] = batches.state_dict()
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        set_rng_state(pending["rng"])
        batches = self._batches(trainer)
        if batches is not None and "batches" in pending:
            batches.load_state_dict(pending["batches"])

    def _batches(self, trainer: Optional[pl.Trainer] = None) -> Optional[ResumableBatches]:
        # Lightning keeps a stateful loader's position itself, but skips restoring it when the loader was built
        # before the checkpoint was read (``estimated_stepping_batches`` in ``configure_optimizers`` does that),
        # so the position travels here too and is put back at train start, before the first batch is drawn
        trainer = trainer or self._trainer
        loader = getattr(trainer, "train_dataloader", None) if trainer is not None else None
        return loader if isinstance(loader, ResumableBatches) else None
