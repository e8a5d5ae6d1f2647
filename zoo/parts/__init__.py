"""The five kinds of parts, one registry each (see each module's docstring for the paper's words)."""

from zoo.parts import amdim_tasks, cpc, momentum, swav  # noqa: F401  (register their extractors and losses)
from zoo.parts.augment import AUGMENTATIONS
from zoo.parts.encoders import ENCODERS
from zoo.parts.extract import EXTRACTORS
from zoo.parts.losses import LOSSES
from zoo.parts.similarity import SIMILARITIES

REGISTRIES = {
    "augment": AUGMENTATIONS,
    "encoder": ENCODERS,
    "extract": EXTRACTORS,
    "similarity": SIMILARITIES,
    "loss": LOSSES,
}

__all__ = ["AUGMENTATIONS", "ENCODERS", "EXTRACTORS", "LOSSES", "SIMILARITIES", "REGISTRIES"]
