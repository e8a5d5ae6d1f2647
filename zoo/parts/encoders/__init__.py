"""Encoders, registered by name in ``ENCODERS``."""

from zoo.parts.encoders.base import ENCODERS, Encoder
from zoo.parts.encoders import amdim, cpc_resnet, resnet  # noqa: F401  (registers the encoders)

__all__ = ["ENCODERS", "Encoder"]
