"""The pre-training batch stream: shuffled batches that can resume in the middle of an epoch.

A plain ``DataLoader`` restarts its epoch after a crash, so a run resumed from a mid-epoch checkpoint would see
some images twice and others never, and drift from the run that was not interrupted. ``ResumableBatches``
draws each epoch's order from ``(seed, epoch)`` alone and counts the batches it has handed out; Lightning saves
that count in every checkpoint (``state_dict``) and gives it back on ``--ckpt_path`` (``load_state_dict``), and
the resumed epoch skips exactly the batches already trained on.

Under DDP each process takes every ``world_size``-th image of the epoch's order (as ``DistributedSampler``
does), so the stream shards itself and Lightning does not replace its sampler.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from zoo.errors import ZooError
from zoo.parts.distributed import world as rank_and_world


def dataset_size(data: Dataset) -> int:
    """``len(data)``, or one line when ``data`` has no length. torch's ``Dataset`` declares no ``__len__`` (an
    iterable-style dataset has none), while everything here that counts, shuffles or subsets a dataset needs one."""
    if not isinstance(data, Sized):
        raise ZooError(f"the dataset {type(data).__name__} has no length (no __len__); a map-style dataset with a "
                       "length is needed")
    return len(data)


class _EpochOrder:
    """The ``sampler`` Lightning sees: it receives ``set_epoch`` at the start of every epoch."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))


class _Plan:
    """A batch sampler that yields the batches planned for the current pass (the loader sets them)."""

    def __init__(self) -> None:
        self.batches: List[List[int]] = []

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ResumableBatches:
    """Shuffled, full batches of ``dataset`` for pre-training, resumable mid-epoch.

    Args:
        dataset: a map-style dataset (``__getitems__`` is used when it has one).
        batch_size: images per batch and process; the last incomplete batch of an epoch is dropped.
        seed: the seed of every epoch's order.
        num_workers, collate_fn, persistent_workers: as for ``torch.utils.data.DataLoader``, which loads the
            planned batches (in worker processes when ``num_workers`` > 0).
        receive: applied in this process to each batch the loader yields, before it is handed on (the image
            folders settle there the files their workers could not decode).
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, num_workers: int = 0,
                 collate_fn: Optional[Callable] = None, persistent_workers: bool = False,
                 receive: Optional[Callable[[Any], Any]] = None) -> None:
        self.dataset, self.batch_size, self.seed, self.receive = dataset, int(batch_size), int(seed), receive
        self.sampler = _EpochOrder(dataset_size(dataset), self.seed)
        self._plan = _Plan()
        # own generator: creating worker iterators must not draw from the global RNG the augmentations use
        self._loader = DataLoader(dataset, batch_sampler=self._plan, num_workers=num_workers, collate_fn=collate_fn,
                                  persistent_workers=persistent_workers and num_workers > 0,
                                  generator=torch.Generator().manual_seed(self.seed))
        self._epoch, self._served = 0, 0  # the epoch being served and the batches of it handed out so far
        self._skip: Optional[Dict[str, int]] = None

    def __len__(self) -> int:
        _, world = rank_and_world()
        return dataset_size(self.dataset) // world // self.batch_size

    def epoch_batches(self, epoch: int) -> List[List[int]]:
        """This process's batches of ``epoch``, in order (a pure function of seed, epoch and world size)."""
        rank, world = rank_and_world()
        order = self.sampler.indices(epoch)
        order = order[: len(order) - len(order) % world][rank::world]
        count = len(order) // self.batch_size
        return order[: count * self.batch_size].view(count, self.batch_size).tolist()

    def __iter__(self) -> Iterator[Any]:
        return self._serve()

    def _serve(self) -> Iterator[Any]:
        # a generator: nothing below runs before the first batch is asked for, after Lightning's set_epoch
        epoch = self.sampler.epoch
        start = 0
        if self._skip is not None:
            if self._skip["epoch"] == epoch:
                start = self._skip["served"]
            self._skip = None
        batches = self.epoch_batches(epoch)
        self._epoch, self._served = epoch, start
        self._plan.batches = batches[start:]
        for batch in self._loader:
            self._served += 1
            yield batch if self.receive is None else self.receive(batch)

    # Lightning's stateful-iterable interface -------------------------------------------------------------------
    def state_dict(self) -> Dict[str, int]:
        _, world = rank_and_world()
        return {"epoch": self._epoch, "served": self._served, "seed": self.seed, "batch_size": self.batch_size,
                "world_size": world, "dataset_size": dataset_size(self.dataset)}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        _, world = rank_and_world()
        now = {"seed": self.seed, "batch_size": self.batch_size, "world_size": world,
               "dataset_size": dataset_size(self.dataset)}
        changed = {k: (state.get(k), v) for k, v in now.items() if state.get(k) != v}
        if changed:
            detail = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ZooError(f"cannot resume the data stream mid-epoch: the run's data settings changed ({detail}); "
                           "resume with the original settings or start a new run")
        self._skip = {"epoch": int(state["epoch"]), "served": int(state["served"])}
