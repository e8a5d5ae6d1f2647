"""ResNet encoders from torchvision or timm, with an optional small-image stem and a width multiplier."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import torch.nn as nn
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.encoders.base import Encoder

_TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def _small_stem(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)


class ResNetEncoder(Encoder):
    """ResNet trunk without its classifier; maps ``layer1`` .. ``layer4``.

    ``small_image_stem`` replaces the 7x7/2 convolution and max-pool by one 3x3/1 convolution, as SimCLR does
    for CIFAR ("we replace the first 7x7 Conv of stride 2 with 3x3 Conv of stride 1, and also remove the first
    max pooling operation"). ``width`` scales every stage's channels (timm backend; SimCLR's 2x/4x ResNets).
    """

    def __init__(self, *, arch: str = "resnet50", in_channels: int = 3, small_image_stem: bool = False,
                 width: float = 1.0, backend: str = "torchvision") -> None:
        super().__init__()
        if backend not in ("torchvision", "timm"):
            raise ZooError(f"resnet backend must be 'torchvision' or 'timm', got {backend!r}")
        if width != 1.0 and backend != "timm":
            raise ZooError("resnet width multipliers need backend='timm'")
        self.in_channels = in_channels
        self.min_size = 8 if small_image_stem else 32
        trunk: Any = _timm_resnet(arch, in_channels, width) if backend == "timm" else _torchvision_resnet(arch)
        stem_out = trunk.conv1.out_channels
        if small_image_stem:
            trunk.conv1 = _small_stem(in_channels, stem_out)
            trunk.maxpool = nn.Identity()
        elif in_channels != trunk.conv1.in_channels:
            trunk.conv1 = nn.Conv2d(in_channels, stem_out, kernel_size=7, stride=2, padding=3, bias=False)
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, getattr(trunk, "act1", None) or trunk.relu, trunk.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        self.map_names = ("layer1", "layer2", "layer3", "layer4")
        last_block = self.layer4[-1]
        self.num_features = (last_block.conv3 if hasattr(last_block, "conv3") else last_block.conv2).out_channels

    def _maps(self, x: Tensor, wanted: Tuple[str, ...]) -> Dict[str, Tensor]:
        return self._run_stages(self.stem(x), wanted)


def _torchvision_resnet(arch: str) -> nn.Module:
    if arch not in _TORCHVISION_RESNETS:
        raise ZooError(f"torchvision resnet arch must be one of {list(_TORCHVISION_RESNETS)}, got {arch!r}")
    import torchvision

    return getattr(torchvision.models, arch)(weights=None)


def _timm_resnet(arch: str, in_channels: int, width: float) -> nn.Module:
    import timm

    kwargs: Dict[str, Any] = {}
    if width != 1.0:
        kwargs["channels"] = tuple(int(round(c * width)) for c in (64, 128, 256, 512))
        kwargs["stem_width"] = int(round(64 * width))
    try:
        return timm.create_model(arch, pretrained=False, in_chans=in_channels, num_classes=0, **kwargs)
    except (RuntimeError, TypeError) as err:
        raise ZooError(f"timm could not build {arch!r} with {kwargs}: {err}") from None


