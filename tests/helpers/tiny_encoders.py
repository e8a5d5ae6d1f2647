"""A one-convolution encoder for fast unit tests of extraction parts: any input size, trainable, and every input
(crop or patch) encoded independently of the others. Not registered."""

import torch
import torch.nn as nn

import zoo


class TinyConv(zoo.Encoder):
    """One 3x3 convolution and a ReLU, pooled by the base class."""

    def __init__(self, in_channels: int = 1, width: int = 6) -> None:
        super().__init__()
        self.in_channels, self.num_features, self.map_names = in_channels, width, ("conv",)
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)

    def _maps(self, x, wanted):
        return {"conv": torch.relu(self.conv(x))}
