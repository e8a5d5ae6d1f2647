"""Reference tests for the CPC v2 row against the paper (Hénaff et al., arXiv:1905.09272, section 4.1).

- layer normalisation: a patch's features do not depend on the other patches / images of the batch, and every
  norm equals a hand-written layer norm over that sample's (C, H, W);
- directions: for each of the four directions the positives are the patches k steps away on the far side,
  written out by hand, and a context only sees its own side of the grid (checked by perturbing the other side);
- colour dropping: exactly one channel survives per patch, each one about a third of the time.
"""

from typing import Callable, Dict, List, Tuple

import pytest
import torch
import torch.nn as nn

import zoo
from tests.zoo.parts.extract.test_cpc_context import MeanEncoder, coded_grid, identity_targets
from zoo.build import build_encoder
from zoo.parts.augment import ops
from zoo.parts.encoders.cpc_resnet import CPCResNetEncoder
from zoo.parts.extract.cpc_context import CPCContextExtractor

ROW = zoo.get_method("cpc_v2")
SMALL = dict(layers=[1, 1, 1, 1], width_per_group=16, patch_size=16)  # the row's encoder, shrunk for a CPU test


def test_row_follows_the_paper():
    assert ROW.encoder.name == "cpc_resnet" and ROW.encoder.kwargs["arch"] == "resnet161"
    assert ROW.augment.kwargs["patch_colour"] == "drop"
    assert sorted(ROW.extract.kwargs["directions"]) == ["bottom_up", "left_right", "right_left", "top_down"]


# --- layer normalisation -------------------------------------------------------------------------------------


def test_row_encoder_features_ignore_the_rest_of_the_batch():
    """Training mode: changing every other patch of the batch leaves patch 0's features unchanged (up to rounding)."""
    torch.manual_seed(0)
    encoder = build_encoder(ROW.encoder.merged(SMALL)).train()
    batch = torch.randn(6, 3, 16, 16)
    other = batch.clone()
    other[1:] = 5.0 * torch.randn(5, 3, 16, 16) + 3.0  # different statistics altogether
    with torch.no_grad():
        a, b = encoder(batch), encoder(other)
        alone = encoder(batch[:1])
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in encoder.modules())
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(a[0], alone[0], rtol=0, atol=1e-5)  # other kernels for a batch of one
    assert not torch.allclose(a[1], b[1])


def test_every_norm_is_a_layer_norm_over_one_samples_c_h_w():
    torch.manual_seed(0)
    encoder = CPCResNetEncoder(arch="resnet50", **SMALL)
    seen: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    norms = [m for m in encoder.modules() if isinstance(m, nn.LayerNorm)]
    with torch.no_grad():
        for m in norms:  # non-trivial affine, so the check covers it
            m.weight.normal_()
            m.bias.normal_()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((i[0].clone(), o.clone(), m))) for m in norms]
    encoder(torch.randn(3, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert len(seen) == len(norms) > 10
    for x, out, m in seen:
        assert tuple(m.normalized_shape) == tuple(x.shape[1:])  # (C, H, W) of one sample
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        var = flat.var(1, unbiased=False).view(-1, 1, 1, 1)
        by_hand = (x - mean) / torch.sqrt(var + m.eps) * m.weight + m.bias
        torch.testing.assert_close(out, by_hand, rtol=1e-4, atol=1e-4)


def test_resnet161_has_the_papers_third_stack():
    """ "46 blocks with 4096-dimensional feature maps and 512-dimensional bottleneck layers" (small patches)."""
    encoder = CPCResNetEncoder(arch="resnet161", patch_size=16, width_per_group=64)
    stack = encoder.layer3
    assert len(stack) == 46
    assert all(block.conv3.out_channels == 4096 and block.conv1.out_channels == 512 for block in stack)
    assert [len(encoder.layer1), len(encoder.layer2), len(encoder.layer4)] == [3, 4, 3]


# --- directions ----------------------------------------------------------------------------------------------

# for each direction, by hand: the original (row, col) of every anchor for step k, in the extractor's order,
# and where its positive lies
Position = Tuple[int, int]
HAND: Dict[str, Callable[[int, int, int], List[Tuple[Position, Position]]]] = {
    "top_down": lambda r, q, k: [((i, j), (i + k, j)) for i in range(r - k) for j in range(q)],
    "bottom_up": lambda r, q, k: [((r - 1 - i, j), (r - 1 - i - k, j)) for i in range(r - k) for j in range(q)],
    "left_right": lambda r, q, k: [((i, j), (i, j + k)) for j in range(q - k) for i in range(r)],
    "right_left": lambda r, q, k: [((i, q - 1 - j), (i, q - 1 - j - k)) for j in range(q - k) for i in range(r)],
}
# which grid positions the context at (row, col) may see
SIDE: Dict[str, Callable[[Position, Position], bool]] = {
    "top_down": lambda a, p: p[0] <= a[0],
    "bottom_up": lambda a, p: p[0] >= a[0],
    "left_right": lambda a, p: p[1] <= a[1],
    "right_left": lambda a, p: p[1] >= a[1],
}


def four_way(steps: int, channels: int = 1, layers: int = 1) -> CPCContextExtractor:
    return CPCContextExtractor(encoder=MeanEncoder(channels), context_dim=8, target_dim=1, steps=steps,
                               n_context_layers=layers, directions=list(HAND))


@pytest.mark.parametrize("batch,rows,cols,steps", [(2, 4, 3, 2), (1, 3, 5, 2)])
def test_positives_of_every_direction_by_hand(batch, rows, cols, steps):
    ext = four_way(steps)
    identity_targets(ext)
    comps = ext(MeanEncoder(), [coded_grid(batch, rows, cols)])
    assert len(comps) == 4 * steps and all(c.weight == pytest.approx(1 / (4 * steps)) for c in comps)
    for n, c in enumerate(comps):
        direction, k = list(HAND)[n // steps], n % steps + 1
        pairs = HAND[direction](rows, cols, k)
        expected = [100 * b + 10 * p[0] + p[1] for b in range(batch) for _, p in pairs]
        assert c.candidates[c.positives, 0].tolist() == expected, direction


@pytest.mark.parametrize("direction", list(HAND))
def test_each_context_sees_only_its_side(direction):
    """Perturb one patch at a time: an anchor changes only if that patch is on its side of the grid."""
    torch.manual_seed(0)
    rows, cols, steps = 4, 4, 1
    ext = four_way(steps, channels=3, layers=2).double()
    grid = torch.randn(1, rows, cols, 3, 2, 2, dtype=torch.double)
    index = list(HAND).index(direction) * steps
    base = ext(MeanEncoder(3), [grid])[index].anchors
    anchors = [a for a, _ in HAND[direction](rows, cols, 1)]
    for pr in range(rows):
        for pc in range(cols):
            bumped = grid.clone()
            bumped[0, pr, pc] += torch.randn(3, 2, 2, dtype=torch.double)
            moved = (ext(MeanEncoder(3), [bumped])[index].anchors - base).abs().sum(1) > 0
            for n, a in enumerate(anchors):
                if not SIDE[direction](a, (pr, pc)):
                    assert not moved[n], f"{direction}: anchor {a} saw patch {(pr, pc)}"
            if (pr, pc) in anchors:  # a context sees its own patch
                assert moved[anchors.index((pr, pc))]


def test_horizontal_directions_need_enough_columns():
    ext = CPCContextExtractor(encoder=MeanEncoder(), context_dim=4, target_dim=1, steps=2, n_context_layers=1,
                              directions=["left_right"])
    with pytest.raises(zoo.ZooError, match=r"more than 2 columns, got 2 \(direction left_right\)"):
        ext(MeanEncoder(), [coded_grid(1, 5, 2)])
    with pytest.raises(zoo.ZooError, match="distinct names"):
        CPCContextExtractor(encoder=MeanEncoder(), directions=["up"])


# --- colour dropping -----------------------------------------------------------------------------------------


def test_colour_dropping_keeps_one_channel_uniformly():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3000, 3, 6, 6, generator=gen)
    fill = (0.4, 0.5, 0.6)
    y = ops.drop_colour_channels(x, fill, gen)
    same = (y == x).flatten(2).all(2)  # (N, 3): which channel came through untouched
    assert torch.all(same.sum(1) == 1)
    counts = same.sum(0)
    assert torch.all((counts - 1000).abs() < 5 * (3000 * 2 / 9) ** 0.5), counts.tolist()  # binomial, 5 sd
    kept_sd = x[same].view(3000, -1).std(1, unbiased=False).view(-1, 1, 1)
    for c in range(3):
        dropped = y[:, c][~same[:, c]]
        noise = (dropped - fill[c]) / kept_sd[~same[:, c]]
        assert noise.std().item() == pytest.approx(0.01, rel=0.05)  # ~1/100 of the kept channel's spread


def test_cpc_preset_drops_two_channels_in_every_patch():
    torch.manual_seed(0)
    mean, std = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
    augment = zoo.REGISTRIES["augment"].build("cpc", dict(size=16, patch=8, overlap=4, mean=mean, std=std,
                                                          patch_colour="drop"))
    (view,) = augment(torch.randint(0, 256, (200, 3, 16, 16), dtype=torch.uint8))
    patches = view.flatten(0, 2)  # (1800, 3, 8, 8), normalised
    near_zero = patches.abs().flatten(2).amax(2) < 0.2  # dropped: the mean plus ~1/100 noise, so ~0 normalised
    assert torch.all(near_zero.sum(1) == 2)
    kept = (~near_zero).float().mean(0)
    assert torch.all((kept - 1 / 3).abs() < 0.05), kept.tolist()


def test_colour_dropping_refuses_one_channel_and_jitter_stays_available():
    args = dict(size=16, patch=8, overlap=4, mean=[0.5], std=[0.25])
    with pytest.raises(zoo.ZooError, match="patch_colour='drop' keeps one of three colour channels"):
        zoo.REGISTRIES["augment"].build("cpc", dict(args, patch_colour="drop"))
    for colour in ("jitter", "none"):
        (view,) = zoo.REGISTRIES["augment"].build("cpc", dict(args, patch_colour=colour))(
            torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8))
        assert view.shape == (2, 3, 3, 1, 8, 8)
