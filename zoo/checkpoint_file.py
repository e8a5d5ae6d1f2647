"""The one reader of PyTorch checkpoint files: ``torch.load(weights_only=True)``, so a file can never run code
when it is read, with every failure (missing, truncated, the legacy non-zip format, a pickled object that
weights-only loading refuses) as one line. Training resumes, exports and the converters of other projects'
releases all read through it, each adding what the failure means for it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Optional

from zoo.errors import ZooError, first_line


class UnreadableCheckpoint(ZooError):
    """A checkpoint file that cannot be read with ``weights_only=True``; ``reason`` says why, in one line."""

    def __init__(self, path: Any, reason: str) -> None:
        super().__init__(f"{path} is not a readable checkpoint (loaded with weights_only=True): {reason}")
        self.path, self.reason = path, reason


def read_checkpoint_file(path: Any, *, map_location: Any = "cpu", mmap: bool = False,
                         load: Optional[Callable[..., Any]] = None) -> Any:
    """The tensors and plain containers of ``path``. ``mmap=True`` maps the file instead of reading it: tensors
    are paged in as they are used (resuming a large run does not hold a second copy of it). ``load`` is the
    ``torch.load`` to call where a caller stands in for it."""
    import torch

    if "://" not in str(path) and not Path(path).is_file():
        raise UnreadableCheckpoint(path, "no such file")
    try:
        return (load or torch.load)(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # zip, pickle and weights_only errors alike
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        reason = (f"it contains a pickled {found.group(1)} object, which weights_only loading refuses" if found
                  else f"{type(err).__name__}: {first_line(err)}")
        raise UnreadableCheckpoint(path, reason) from None
