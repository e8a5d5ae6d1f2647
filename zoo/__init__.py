"""contrastive-zoo: contrastive self-supervised methods as five registered parts, and their pretrained encoders.

Falcon & Cho (arXiv:2009.00104) describe every contrastive method by five characteristics: (1) data
augmentation pipeline, (2) encoder, (3) representation extraction, (4) similarity measure, (5) loss. ``zoo``
holds those parts, the method rows that combine them, and ``load_encoder`` for pretrained encoders (registry
names such as ``"yadim"``, ``hf-hub:`` ids, exported folders). It never imports Lightning; training lives in the separate ``training`` package.
"""

from __future__ import annotations

from typing import List

from zoo.errors import UnknownNameError, ZooError
from zoo.methods import get_method, list_methods, register_method, resolve_method
from zoo.parts import REGISTRIES
from zoo.parts.encoders.base import Encoder
from zoo.pretrained.api import eval_transform, get_card, list_encoders, load_encoder
from zoo.pretrained.exported import EvalTransform
from zoo.spec import CHARACTERISTICS, Method, Part
from zoo.version import __version__ as __version__

__all__ = [
    "CHARACTERISTICS", "Encoder", "EvalTransform", "Method", "Part", "REGISTRIES", "UnknownNameError", "ZooError",
    "eval_transform", "get_card", "get_method", "list_encoders", "list_methods", "list_parts", "load_encoder",
    "register_method", "resolve_method",
]


def list_parts(characteristic: str) -> List[str]:
    """Registered part names for one characteristic (``augment``, ``encoder``, ``extract``, ...)."""
    if characteristic not in REGISTRIES:
        raise ZooError(f"unknown characteristic {characteristic!r}; use one of {list(REGISTRIES)}")
    return REGISTRIES[characteristic].names()
