"""contrastive-zoo: contrastive self-supervised methods as five registered parts, and their pretrained encoders.

Falcon & Cho (arXiv:2009.00104) describe every contrastive method by five characteristics: (1) data
augmentation pipeline, (2) encoder, (3) representation extraction, (4) similarity measure, (5) loss. ``zoo``
holds those parts, the method rows that combine them, and ``load_encoder`` for trained encoders. It never
imports Lightning; training lives in the separate ``training`` package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

from zoo.errors import UnknownNameError, ZooError
from zoo.exported import EvalTransform, eval_transform, load_exported
from zoo.methods import get_method, list_methods, register_method, resolve_method
from zoo.parts import REGISTRIES
from zoo.parts.encoders.base import Encoder
from zoo.spec import CHARACTERISTICS, Method, Part

__version__ = "0.1.0"

__all__ = [
    "CHARACTERISTICS", "Encoder", "EvalTransform", "Method", "Part", "REGISTRIES", "UnknownNameError", "ZooError",
    "eval_transform", "get_method", "list_methods", "list_parts", "load_encoder", "register_method",
    "resolve_method",
]


def list_parts(characteristic: str) -> List[str]:
    """Registered part names for one characteristic (``augment``, ``encoder``, ``extract``, ...)."""
    if characteristic not in REGISTRIES:
        raise ZooError(f"unknown characteristic {characteristic!r}; use one of {list(REGISTRIES)}")
    return REGISTRIES[characteristic].names()


def load_encoder(name_or_path: str | os.PathLike) -> Encoder:
    """A pretrained encoder in eval mode, ``encoder(x)`` giving (B, ``encoder.num_features``).

    Accepts a local exported folder (``model.safetensors`` + ``config.json``). Weights are loaded strictly;
    nothing falls back to random weights.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return load_exported(path)
    raise ZooError(f"{str(name_or_path)!r} is not an exported encoder folder (no such directory)")
