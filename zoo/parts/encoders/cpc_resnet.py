"""The CPC v2 ResNet of pl_bolts (``CPCResNet`` with ``LNBottleneck`` blocks), rewritten as a registered encoder.

CPC v2 (Hénaff et al., arXiv:1905.09272) encodes every patch of an image grid on its own with a ResNet whose
batch norms are replaced by layer norms, so that no statistic is shared between the patches of a batch. The
pl_bolts implementation (``pl_bolts/models/self_supervised/cpc/networks.py``) fixes the layout this module
reproduces, parameter name for parameter name, so its checkpoints load without renaming:

- stem: ``conv1`` 7x7/2 (64 channels, no bias) -> ``ln1`` -> ReLU -> 3x3/2 max-pool;
- four stages of bottlenecks with (planes, expansion, stride) = (64, 4, 1), (128, 4, 2), (512, 8, 2), (512, 4, 2),
  so the stages give 256, 512, 4096 and 2048 channels (the third stage's expansion of 8 is pl_bolts' choice);
- every convolution is followed by a ``LayerNorm`` over (C, H, W) with an elementwise affine of that full shape,
  which ties the network to one patch size; the shortcut is ``downsample.0`` (1x1 conv) + ``downsample.1`` (layer
  norm) where the shape changes;
- pl_bolts' ``cpc_resnet101`` uses 3, 4, 46, 3 blocks per stage.

That last layout is the paper's ResNet-161 (section 4.1, "Model capacity"): "we convert the third residual stack
of the ResNet-101 (containing 23 blocks, 1024-dimensional feature maps, and 256-dimensional bottleneck layers) to
use 46 blocks with 4096-dimensional feature maps and 512-dimensional bottleneck layers. We call the resulting
network ResNet-161." ``arch="resnet161"`` names it; the fourth stack is left as in ResNet-101 (512-dimensional
bottlenecks, 2048 channels), which the paper does not restate. That gives 326M convolution weights where 305M is
the count reported for CPC v2's ResNet-161 (e.g. SimCLR's and BYOL's comparison tables), so some detail of the
paper's network is not recoverable from its text. ``arch="resnet50"`` / ``"resnet101"`` are the plain widths (third stack 256 -> 1024) with 3, 4, 6, 3 /
3, 4, 23, 3 blocks, layer-normalised the same way.

Normalisation: "batch normalization allows these models to find a trivial solution to CPC: it introduces a
dependency between patches (through the batch statistics) [...] we can reclaim much of batch normalization's
training efficiency by using layer normalization" (section 4.1, "Layer normalization"). Every patch is one sample
of the batch, and each layer norm takes its mean and variance over that sample's (C, H, W) only, so a patch's
features never depend on the other patches or images of the batch, in training as in evaluation.

Where this differs: the CPC papers build on pre-activation ResNet-v2 blocks (CPC v1's encoder is a "ResNet v2
101"); these blocks keep pl_bolts' post-activation order (conv -> norm -> ReLU, ReLU after the residual sum).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.encoders.base import ENCODERS, Encoder

# (planes, expansion, stride) of the four stages, as pl_bolts' CPCResNet builds them
STAGES: Tuple[Tuple[int, int, int], ...] = ((64, 4, 1), (128, 4, 2), (512, 8, 2), (512, 4, 2))
# torchvision's bottleneck widths: 256, 512, 1024, 2048 output channels
PLAIN_STAGES: Tuple[Tuple[int, int, int], ...] = ((64, 4, 1), (128, 4, 2), (256, 4, 2), (512, 4, 2))
STEM_CHANNELS = 64
# arch -> (stage widths, blocks per stage); resnet161 is pl_bolts' layout, the paper's ResNet-161
ARCHS: Dict[str, Tuple[Tuple[Tuple[int, int, int], ...], Tuple[int, int, int, int]]] = {
    "resnet50": (PLAIN_STAGES, (3, 4, 6, 3)),
    "resnet101": (PLAIN_STAGES, (3, 4, 23, 3)),
    "resnet161": (STAGES, (3, 4, 46, 3)),
}


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class LNBottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 convolutions, each followed by a layer norm over (C, H, W), plus a shortcut."""

    def __init__(self, n_in: int, planes: int, expansion: int, stride: int, width_per_group: int,
                 size: int) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0))
        n_out = planes * expansion
        out_size = _conv_out(size, 3, stride, 1)
        self.conv1 = nn.Conv2d(n_in, width, 1, bias=False)
        self.ln1 = nn.LayerNorm([width, size, size])
        # on a 1x1 map (layer3.0 and layer4.0 of 8px patches) stride 1 gives the same 1x1 output from the same
        # centre tap, and the same weights; with stride 2 there, oneDNN's AMX bf16 weight gradient leaves the taps
        # that only meet padding uninitialised (garbage or NaN, which the optimizer then writes into the weights)
        self.conv2 = nn.Conv2d(width, width, 3, stride if size > 1 else 1, padding=1, bias=False)
        self.ln2 = nn.LayerNorm([width, out_size, out_size])
        self.conv3 = nn.Conv2d(width, n_out, 1, bias=False)
        self.ln3 = nn.LayerNorm([n_out, out_size, out_size])
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or n_in != n_out:
            self.downsample = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=False),
                                            nn.LayerNorm([n_out, out_size, out_size]))
        self.out_size = out_size

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.ln1(self.conv1(x)))
        out = self.relu(self.ln2(self.conv2(out)))
        out = self.ln3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


@ENCODERS.register("cpc_resnet")
class CPCResNetEncoder(Encoder):
    """pl_bolts' CPC v2 ResNet for ``patch_size`` x ``patch_size`` patches; maps ``layer1`` .. ``layer4``.

    ``arch`` (``resnet50``, ``resnet101``, ``resnet161``) picks the stage widths and block counts; without it the
    widths are pl_bolts' (= ``resnet161``). ``layers``, when given, replaces the number of bottlenecks per stage
    (pl_bolts' ``cpc_resnet101``: 3, 4, 46, 3; ``cpc_resnet50``: 3, 4, 6, 3). ``width_per_group`` scales the
    bottlenecks' inner width as in torchvision (64 = plain). The input size is fixed because the layer norms are
    sized for it; a patch grid (B, rows, cols, C, p, p) is encoded patch by patch and averaged (see
    ``Encoder.forward``).
    """

    def __init__(self, *, patch_size: int = 32, arch: Optional[str] = None, layers: Optional[Sequence[int]] = None,
                 in_channels: int = 3, width_per_group: int = 64) -> None:
        super().__init__()
        if arch is not None and arch not in ARCHS:
            raise ZooError(f"cpc_resnet arch must be one of {sorted(ARCHS)}, got {arch!r}")
        stages, default_layers = ARCHS[arch or "resnet161"]
        layers = [int(n) for n in (default_layers if layers is None else layers)]
        if len(layers) != 4 or min(layers) < 1:
            raise ZooError(f"cpc_resnet layers must be four block counts >= 1, got {layers}")
        if patch_size < 1 or width_per_group < 1 or in_channels < 1:
            raise ZooError(f"cpc_resnet needs positive patch_size, in_channels and width_per_group, got "
                           f"{patch_size}, {in_channels}, {width_per_group}")
        self.in_channels = in_channels
        self.input_size = (patch_size, patch_size)
        self.map_names = ("layer1", "layer2", "layer3", "layer4")
        size = _conv_out(patch_size, 7, 2, 3)
        self.conv1 = nn.Conv2d(in_channels, STEM_CHANNELS, 7, 2, padding=3, bias=False)
        self.ln1 = nn.LayerNorm([STEM_CHANNELS, size, size])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        size = _conv_out(size, 3, 2, 1)
        channels = STEM_CHANNELS
        for i, ((planes, expansion, stride), blocks) in enumerate(zip(stages, layers, strict=True), start=1):
            stage: List[nn.Module] = []
            for b in range(blocks):
                block = LNBottleneck(channels, planes, expansion, stride if b == 0 else 1, width_per_group, size)
                stage.append(block)
                channels, size = planes * expansion, block.out_size
            setattr(self, f"layer{i}", nn.Sequential(*stage))
        self.num_features = channels

    def _maps(self, x: Tensor, wanted: Tuple[str, ...]) -> Dict[str, Tensor]:
        return self._run_stages(self.maxpool(self.relu(self.ln1(self.conv1(x)))), wanted)
