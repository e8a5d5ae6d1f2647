"""The five kinds of parts, one registry each (see each module's docstring for the paper's words)."""

from zoo.parts import amdim_tasks  # noqa: F401  (registers the multi_map extractor)
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
