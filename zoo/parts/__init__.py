"""The five kinds of parts, one registry each (see each module's docstring for the paper's words).

Falcon & Cho (arXiv:2009.00104): (1) data augmentation pipeline (``augment``), (2) encoder (``encoders``),
(3) representation extraction (``extract``), (4) similarity measure (``similarity``), (5) loss (``losses``).
"""

from typing import Any, Dict

from zoo.part_registry import PartRegistry
from zoo.parts.augment import AUGMENTATIONS
from zoo.parts.encoders import ENCODERS
from zoo.parts.extract import EXTRACTORS
from zoo.parts.losses import LOSSES
from zoo.parts.similarity import SIMILARITIES

REGISTRIES: Dict[str, PartRegistry[Any]] = {
    "augment": AUGMENTATIONS,
    "encoder": ENCODERS,
    "extract": EXTRACTORS,
    "similarity": SIMILARITIES,
    "loss": LOSSES,
}

__all__ = ["AUGMENTATIONS", "ENCODERS", "EXTRACTORS", "LOSSES", "SIMILARITIES", "REGISTRIES"]
