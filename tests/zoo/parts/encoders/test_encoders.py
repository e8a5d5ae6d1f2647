import pytest
import torch

import zoo
from zoo.errors import ZooError

ENC = zoo.REGISTRIES["encoder"]


@pytest.mark.parametrize("size", [32, 64, 128])
def test_amdim_maps_are_7_5_1(size):
    enc = ENC.build("amdim", dict(in_channels=3, image_size=size, ndf=4, n_rkhs=16, depth=2))
    maps = enc.forward_features(torch.randn(2, 3, size, size), ("r7", "r5", "r1"))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "r7": (2, 16, 7, 7), "r5": (2, 16, 5, 5), "r1": (2, 16, 1, 1)}
    assert enc(torch.randn(2, 3, size, size)).shape == (2, 16) and enc.num_features == 16


def test_resnet_small_stem_and_width():
    enc = ENC.build("resnet", dict(arch="resnet18", in_channels=1, small_image_stem=True))
    assert enc(torch.randn(2, 1, 16, 16)).shape == (2, 512)
    assert enc.forward_features(torch.randn(2, 1, 16, 16), ("layer4",))["layer4"].shape == (2, 512, 2, 2)
    wide = ENC.build("resnet", dict(arch="resnet18", backend="timm", width=0.25))
    assert wide(torch.randn(2, 3, 32, 32)).shape == (2, 128) and wide.num_features == 128


def test_encoder_input_errors():
    enc = ENC.build("amdim", dict(in_channels=1, image_size=32, ndf=4, n_rkhs=8, depth=1))
    with pytest.raises(ZooError, match="expects 1 input channel"):
        enc(torch.randn(2, 3, 32, 32))
    with pytest.raises(ZooError, match="expects 32x32 inputs, got 28x28"):
        enc(torch.randn(2, 1, 28, 28))
    with pytest.raises(ZooError, match="has no feature map"):
        enc.forward_features(torch.randn(2, 1, 32, 32), ("layer4",))
    with pytest.raises(ZooError, match="supports image_size"):
        ENC.build("amdim", dict(image_size=48))
    with pytest.raises(ZooError, match="width multipliers need backend='timm'"):
        ENC.build("resnet", dict(arch="resnet18", width=2.0))
