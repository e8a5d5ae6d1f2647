"""SimCLR's projection head ends as its released code's does: Linear without bias, then a scale-only batch norm.

The reference is written out by hand from ``model_util.projection_head`` / ``linear_layer`` of
google-research/simclr (``use_bias=False, use_bn=True`` on the last layer, batch norm with ``center=False``):
z = gamma * (h W^T - mean) / sqrt(var + eps), mean and biased variance over the batch, no shift.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.build import build_method
from zoo.errors import ZooError
from zoo.parts.extract.base import ProjectionHead


def test_output_batch_norm_is_scale_only_and_matches_the_hand_written_head():
    torch.manual_seed(0)
    head = ProjectionHead(6, 5, 3, output_batch_norm=True).train()
    with torch.no_grad():
        head[-1].weight.uniform_(0.5, 2.0)  # a non-trivial scale
    x = torch.randn(8, 6)
    h = torch.relu(head[1](x @ head[0].weight.t()))  # first block: Linear (no bias) -> BN -> ReLU
    y = h @ head[3].weight.t()
    expected = head[4].weight * (y - y.mean(0)) / torch.sqrt(y.var(0, unbiased=False) + head[4].eps)
    torch.testing.assert_close(head(x), expected)
    assert head[3].bias is None
    assert not head[4].bias.requires_grad and torch.count_nonzero(head[4].bias) == 0
    head(x).pow(2).sum().backward()
    assert head[4].bias.grad is None and head[4].weight.grad is not None


AUGMENT = {"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}


def test_simclr_row_uses_the_scale_only_output_norm_and_other_heads_do_not():
    simclr = build_method(zoo.get_method("simclr").with_overrides(
        augment=AUGMENT, encoder={"name": "resnet", "arch": "resnet18", "in_channels": 3}))
    last = simclr.extract.head[-1]
    assert isinstance(last, torch.nn.BatchNorm1d) and not last.bias.requires_grad
    byol = build_method(zoo.get_method("byol").with_overrides(
        augment=AUGMENT, encoder={"name": "resnet", "arch": "resnet18", "in_channels": 3}))
    assert isinstance(byol.extract.projector[-1], torch.nn.Linear)
    assert isinstance(byol.extract.predictor[-1], torch.nn.Linear)


def test_output_batch_norm_without_a_head_is_refused():
    row = zoo.get_method("yadim").with_overrides(
        augment={"size": 32, "mean": [0.5], "std": [0.25]}, encoder={"ndf": 8, "n_rkhs": 64, "depth": 1, "image_size": 32, "in_channels": 1},
        extract={"head_output_batch_norm": True})
    with pytest.raises(ZooError, match="head_output_batch_norm needs a projection head"):
        build_method(row)
