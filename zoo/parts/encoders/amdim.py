"""The AMDIM encoder (Bachman et al., arXiv:1906.00910), rewritten.

AMDIM "uses the idea of comparing representations across views from feature maps extracted from intermediate
layers of a convolutional neural network" (Falcon & Cho). The encoder is a wide residual network without
padding whose layout is fixed per input size (32, 64 or 128 px) so that its maps are exactly 7x7, 5x5 and 1x1:
``r7`` and ``r5`` are local feature vectors passed through a residual 1x1 "fake RKHS" embedding, ``r1`` is the
global vector. All three have ``n_rkhs`` channels. Widths: ``ndf`` base channels, ``depth`` extra 1x1
residual layers per block.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import ZooError
from zoo.parts.encoders.base import ENCODERS, Encoder


def _bn(channels: int, use_bn: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use_bn else nn.Identity()


class ResNxN(nn.Module):
    """conv(k, stride) -> [bn] -> relu -> conv1x1, plus an average-pooled (channel-padded) shortcut."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int, use_bn: bool) -> None:
        super().__init__()
        self.kernel, self.stride, self.grow = kernel, stride, n_out - n_in
        self.conv1 = nn.Conv2d(n_in, n_out, kernel, stride, bias=False)
        self.bn1 = _bn(n_out, use_bn)
        self.conv2 = nn.Conv2d(n_out, n_out, 1, bias=False)
        self.shortcut = nn.Conv2d(n_in, n_out, kernel, stride) if n_out < n_in else None
        nn.init.zeros_(self.conv2.weight)  # residual branch starts at zero (fixup-like), as in the paper's code

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.relu(self.bn1(self.conv1(x))))
        if self.shortcut is not None:
            return h + self.shortcut(x)
        skip = F.avg_pool2d(x, self.kernel, self.stride) if (self.kernel > 1 or self.stride > 1) else x
        if self.grow > 0:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.grow))
        return h + skip


def _block(n_in: int, n_out: int, kernel: int, stride: int, depth: int, use_bn: bool) -> nn.Sequential:
    layers: List[nn.Module] = [ResNxN(n_in, n_out, kernel, stride, use_bn)]
    layers += [ResNxN(n_out, n_out, 1, 1, use_bn) for _ in range(depth - 1)]
    return nn.Sequential(*layers)


class RKHSEmbedding(nn.Module):
    """Residual 1x1 MLP mapping local features to ``n_rkhs`` dims, ending in batch norm."""

    def __init__(self, n_in: int, n_out: int, use_bn: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 1, bias=False)
        self.bn1 = _bn(n_out, use_bn)
        self.conv2 = nn.Conv2d(n_out, n_out, 1, bias=False)
        self.shortcut = nn.Conv2d(n_in, n_out, 1)
        self.bn_out = nn.BatchNorm2d(n_out)
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn_out(self.conv2(F.relu(self.bn1(self.conv1(x)))) + self.shortcut(x))


# (kernel, stride, channel multiplier) of the downsampling blocks per input size; see the paper's code
_LAYOUTS: Dict[int, Tuple[Tuple[int, int, int], ...]] = {
    32: ((4, 2, 2), (2, 2, 4)),
    64: ((4, 2, 2), (4, 2, 4), (2, 2, 8)),
    128: ((4, 2, 2), (4, 2, 4), (2, 2, 8)),
}


@ENCODERS.register("amdim")
class AMDIMEncoder(Encoder):
    """AMDIM encoder; maps ``r7``, ``r5``, ``r1`` (7x7, 5x5, 1x1), all with ``n_rkhs`` channels."""

    def __init__(self, *, in_channels: int = 3, image_size: int = 32, ndf: int = 128, n_rkhs: int = 1024,
                 depth: int = 3, use_bn: bool = False) -> None:
        super().__init__()
        if image_size not in _LAYOUTS:
            raise ZooError(f"the AMDIM encoder supports image_size {sorted(_LAYOUTS)}, got {image_size}")
        if min(ndf, n_rkhs, depth) < 1:
            raise ZooError(f"AMDIM ndf, n_rkhs and depth must be >= 1, got {ndf}, {n_rkhs}, {depth}")
        self.in_channels, self.num_features = in_channels, n_rkhs
        self.input_size = (image_size, image_size)
        self.map_names = ("r7", "r5", "r1")
        stem: List[nn.Module] = []
        if image_size == 128:  # a 5x5/2 reflect-padded stem first
            stem += [nn.ReflectionPad2d(2), nn.Conv2d(in_channels, ndf, 5, 2), nn.ReLU(inplace=True)]
            in_channels = ndf
        stem += [nn.Conv2d(in_channels, ndf, 3, 1), nn.ReLU(inplace=True)]
        if image_size == 32:
            stem.append(ResNxN(ndf, ndf, 1, 1, use_bn))
        channels = ndf
        for kernel, stride, mult in _LAYOUTS[image_size]:
            stem.append(_block(channels, ndf * mult, kernel, stride, depth, use_bn))
            channels = ndf * mult
        stem.append(_bn(channels, use_bn))
        self.trunk = nn.Sequential(*stem)                                  # -> 7x7
        self.to_5 = _block(channels, channels, 3, 1, depth, use_bn)        # -> 5x5
        self.to_1 = nn.Sequential(_block(channels, channels, 3, 1, depth, use_bn),  # -> 3x3
                                  ResNxN(channels, n_rkhs, 3, 1, use_bn),           # -> 1x1
                                  nn.BatchNorm2d(n_rkhs))
        self.embed_7 = RKHSEmbedding(channels, n_rkhs, use_bn)
        self.embed_5 = RKHSEmbedding(channels, n_rkhs, use_bn)

    def _maps(self, x: Tensor, wanted: Tuple[str, ...]) -> Dict[str, Tensor]:
        h7 = self.trunk(x)
        h5 = self.to_5(h7)
        out: Dict[str, Tensor] = {"r1": self.to_1(h5)}
        if "r5" in wanted:
            out["r5"] = self.embed_5(h5)
        if "r7" in wanted:
            out["r7"] = self.embed_7(h7)
        return {k: out[k] for k in wanted}
