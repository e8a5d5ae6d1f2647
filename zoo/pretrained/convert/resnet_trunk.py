"""The torchvision ResNet trunk layout (``conv1``, ``bn1``, ``layerI.N.{convK,bnK,downsample.0/1}``) -> ``resnet``.

Depth comes from the tensors (blocks per stage, bottleneck or basic), so does the stem (7x7 with max-pool, or the
3x3 small-image stem without it) and the width (timm's multiplier: 64-channel stem, stages scaled). Anything the
resnet encoder cannot compute exactly is refused with the reason, never imported approximately.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Tuple

from torch import Tensor

from zoo.errors import ZooError
from zoo.pretrained.convert.formats import LegacyFormat, Trunk, TrunkResult, register_trunk
from zoo.spec import Part

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
PATTERN = re.compile(rf"^(conv1\.weight|bn1\.{_BN}|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.{_BN}"
                     rf"|downsample\.0\.weight|downsample\.1\.{_BN}))$")
_RESNETS: Dict[Tuple[bool, Tuple[int, ...]], str] = {(False, (2, 2, 2, 2)): "resnet18", (False, (3, 4, 6, 3)): "resnet34", (True, (3, 4, 6, 3)): "resnet50",
            (True, (3, 4, 23, 3)): "resnet101", (True, (3, 8, 36, 3)): "resnet152"}
_ARCH_KEYS = ("arch", "base_encoder", "encoder")  # hyper-parameters / checkpoint fields naming the torchvision arch


def stage_blocks(inner: Mapping[str, Tensor]) -> Tuple[int, ...]:
    """Blocks per stage: one more than the highest ``layerI.N`` index of each stage."""
    found = [re.match(r"layer([1-4])\.(\d+)\.", key) for key in inner]
    return tuple(max([int(m.group(2)) + 1 for m in found if m and m.group(1) == str(i)], default=0) for i in range(1, 5))


def zoo_name(key: str) -> str:
    """torchvision ResNet parameter name -> ``ResNetEncoder`` name (its stem is ``Sequential(conv1, bn1, ...)``)."""
    head, _, rest = key.partition(".")
    return f"{dict(conv1='stem.0', bn1='stem.1').get(head, head)}.{rest}"


def resnet_trunk(inner: Dict[str, Tensor], fmt: LegacyFormat, hparams: Mapping[str, Any]) -> TrunkResult:
    """The ``resnet`` part a torchvision-layout trunk needs, its weights, and the preset its stem suggests."""
    name = fmt.name
    bottleneck = "layer1.0.conv3.weight" in inner
    blocks = stage_blocks(inner)
    arch = _RESNETS.get((bottleneck, blocks))
    if arch is None:
        raise ZooError(f"{name}: a ResNet with {list(blocks)} {'bottleneck' if bottleneck else 'basic'} blocks per "
                       f"stage is none of {sorted(set(_RESNETS.values()))}")
    named = [hparams[k] for k in _ARCH_KEYS if isinstance(hparams.get(k), str) and hparams[k].startswith("resnet")]
    if named and named[0] != arch:
        raise ZooError(f"{name}: the checkpoint names arch {named[0]!r} but its tensors are a {arch}")
    stem_out, in_channels, kernel = (int(s) for s in inner["conv1.weight"].shape[:3])
    small, maxpool = kernel == 3, hparams.get("maxpool1")
    if kernel not in (3, 7):
        raise ZooError(f"{name}: conv1 is {kernel}x{kernel}; only the 7x7 and 3x3 (small-image) stems map")
    if isinstance(maxpool, bool) and maxpool == small:
        raise ZooError(f"{name}: the checkpoint pairs a {kernel}x{kernel} conv1 with maxpool1={maxpool}; the resnet "
                       "encoder has the 7x7 stem with max-pool or the 3x3 stem without it, nothing in between")
    if small and fmt.options.get("pads_input"):
        raise ZooError(f"{name}: this SwAV ResNet zero-pads the input by 1 before its 3x3 conv1 (forward_backbone), "
                       "so its maps differ from the resnet encoder's small_image_stem; only the 7x7 stem imports")
    out1 = int(inner[f"layer1.0.conv{3 if bottleneck else 2}.weight"].shape[0])
    width, inner1 = out1 / (64 * (4 if bottleneck else 1)), int(inner["layer1.0.conv1.weight"].shape[0])
    if stem_out != 64 or inner1 != round(64 * width):
        raise ZooError(f"{name}: a widened ResNet (stem {stem_out} channels, first bottleneck {inner1} -> {out1}) "
                       "cannot be expressed by the resnet encoder's width multiplier (timm keeps a 64-channel stem "
                       "and bottleneck width = planes); only width-1 ResNets import")
    kwargs: Dict[str, Any] = {"arch": arch, "in_channels": in_channels, "small_image_stem": small}
    if width != 1.0:
        kwargs.update(width=width, backend="timm")
    if small and fmt.options.get("small_stem_padding", 1) != 1:
        kwargs["small_stem_padding"] = fmt.options["small_stem_padding"]
    if fmt.options.get("same_padding"):
        kwargs["same_padding"] = True
    state = {zoo_name(k): v for k, v in inner.items()}
    return TrunkResult(Part.of("resnet", **kwargs), state, "cifar10" if small else "imagenet", None)


register_trunk("resnet", Trunk(PATTERN, resnet_trunk))
