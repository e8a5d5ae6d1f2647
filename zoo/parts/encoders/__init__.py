"""Characteristic (2): encoders, registered by name in ``ENCODERS`` (the registry lives in ``base.py``;
each encoder registers itself where it is defined).

"The second way we characterize these methods is by the choice of encoder" (Falcon & Cho, arXiv:2009.00104):
each encoder exposes named feature maps so that extraction strategies can pick the ones they compare.
"""

from zoo.parts.encoders.amdim import AMDIMEncoder
from zoo.parts.encoders.base import ENCODERS, Encoder
from zoo.parts.encoders.cpc_resnet import CPCResNetEncoder
from zoo.parts.encoders.resnet import ResNetEncoder

__all__ = ["ENCODERS", "AMDIMEncoder", "CPCResNetEncoder", "Encoder", "ResNetEncoder"]
