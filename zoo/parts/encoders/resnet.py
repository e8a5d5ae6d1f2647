"""ResNet encoders from torchvision or timm, with an optional small-image stem and a width multiplier."""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.encoders.base import ENCODERS, Encoder

_TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def _small_stem(in_channels: int, out_channels: int, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=padding, bias=False)


def _same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    """TensorFlow's ``SAME`` padding: ``max((ceil(n / s) - 1) * s + k - n, 0)`` zeros per axis, the odd one
    at the bottom / right (what JAX/Haiku and TF ResNets compute, and what converters reproduce with F.pad)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class _Conv2dSame(nn.Conv2d):
    """A strided convolution with ``SAME`` padding (same parameter names as the torchvision layer it replaces)."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(_same_pad(x, self.kernel_size[0], self.stride[0]), self.weight, self.bias)


class _MaxPool2dSame(nn.Module):
    """The stem max-pool with ``SAME`` zero padding (its input follows a ReLU, so zeros never win the max)."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


def _use_same_padding(trunk: nn.Module) -> None:
    """Swap every strided convolution with a kernel > 1 and the stem max-pool for ``SAME``-padded versions; the
    other layers already agree (stride 1: symmetric (k-1)/2; 1x1/2 shortcuts: none)."""
    for name, module in list(trunk.named_modules()):
        parent = trunk.get_submodule(name.rpartition(".")[0]) if "." in name else trunk
        leaf = name.rpartition(".")[2]
        if isinstance(module, nn.Conv2d) and module.stride[0] > 1 and module.kernel_size[0] > 1:
            same = _Conv2dSame(module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0], 0,
                               module.dilation[0], module.groups, module.bias is not None)
            setattr(parent, leaf, same)
        elif isinstance(module, nn.MaxPool2d):
            kernel, stride = module.kernel_size, module.stride
            setattr(parent, leaf, _MaxPool2dSame(int(kernel if isinstance(kernel, int) else kernel[0]),
                                                 int(stride if isinstance(stride, int) else stride[0])))


@ENCODERS.register("resnet")
class ResNetEncoder(Encoder):
    """ResNet trunk without its classifier; maps ``layer1`` .. ``layer4``.

    ``small_image_stem`` replaces the 7x7/2 convolution and max-pool by one 3x3/1 convolution, as SimCLR does
    for CIFAR ("we replace the first 7x7 Conv of stride 2 with 3x3 Conv of stride 1, and also remove the first
    max pooling operation"). ``width`` scales every stage's channels (timm backend; timm keeps a 64-channel stem).
    Two switches reproduce released checkpoints exactly: ``small_stem_padding`` (solo-learn's CIFAR stem pads
    its 3x3/1 conv by 2, ``solo/methods/base.py``) and ``same_padding`` (TensorFlow ``SAME`` padding in the
    strided layers, as ajtejankar/byol-convert's ``resnet.py`` runs BYOL's converted weights).
    """

    def __init__(self, *, arch: str = "resnet50", in_channels: int = 3, small_image_stem: bool = False,
                 width: float = 1.0, backend: str = "torchvision", small_stem_padding: int = 1,
                 same_padding: bool = False) -> None:
        super().__init__()
        if backend not in ("torchvision", "timm"):
            raise ZooError(f"resnet backend must be 'torchvision' or 'timm', got {backend!r}")
        if width != 1.0 and backend != "timm":
            raise ZooError("resnet width multipliers need backend='timm'")
        if small_stem_padding != 1 and not small_image_stem:
            raise ZooError("small_stem_padding applies to the small_image_stem only")
        if not 0 <= small_stem_padding <= 2:
            raise ZooError(f"small_stem_padding must be 0, 1 or 2, got {small_stem_padding!r}")
        self.in_channels = in_channels
        self.min_size = 8 if small_image_stem else 32
        trunk: Any = _timm_resnet(arch, in_channels, width) if backend == "timm" else _torchvision_resnet(arch)
        stem_out = trunk.conv1.out_channels
        if small_image_stem:
            trunk.conv1 = _small_stem(in_channels, stem_out, small_stem_padding)
            trunk.maxpool = nn.Identity()
        elif in_channels != trunk.conv1.in_channels:
            trunk.conv1 = nn.Conv2d(in_channels, stem_out, kernel_size=7, stride=2, padding=3, bias=False)
        if same_padding:
            _use_same_padding(trunk)
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


