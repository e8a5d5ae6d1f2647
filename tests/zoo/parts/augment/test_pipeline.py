import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.parts.augment import ops

AUG = zoo.REGISTRIES["augment"]


def batch(n=6, c=1, h=28, w=28, seed=0):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,kwargs,shape", [
    ("simclr", dict(size=16), (6, 1, 16, 16)),
    ("moco_v2", dict(size=16), (6, 1, 16, 16)),
    ("byol", dict(size=16), (6, 1, 16, 16)),
    ("amdim", dict(size=32), (6, 1, 32, 32)),
    ("yadim", dict(size=32), (6, 1, 32, 32)),
    ("cpc", dict(size=24, patch=8, overlap=4), (6, 5, 5, 1, 8, 8)),
])
def test_preset_shapes_dtypes_and_seed_reproducibility(name, kwargs, shape):
    pipe = AUG.build(name, dict(mean=[0.5], std=[0.25], **kwargs))
    x = batch()
    a = pipe(x, torch.Generator().manual_seed(7))
    b = pipe(x, torch.Generator().manual_seed(7))
    c = pipe(x, torch.Generator().manual_seed(8))
    assert len(a) == (1 if name == "cpc" else 2)
    for va, vb, vc in zip(a, b, c, strict=True):
        assert va.shape == shape and va.dtype == torch.float32
        assert torch.equal(va, vb)
        assert not torch.equal(va, vc)
        assert torch.isfinite(va).all()
    if len(a) == 2:
        assert not torch.equal(a[0], a[1]), "two views of the same image must be drawn independently"


def test_grey_to_rgb_and_channel_errors():
    pipe = AUG.build("simclr", dict(size=16, mean=[0.5] * 3, std=[0.25] * 3, channels=3))
    assert pipe(batch())[0].shape == (6, 3, 16, 16)
    rgb_only = AUG.build("simclr", dict(size=16, mean=[0.5] * 3, std=[0.25] * 3))
    with pytest.raises(ZooError, match="images have 1 channels but mean/std have 3 entries"):
        rgb_only(batch())


def test_cpc_grid_overlap_is_exact_without_patch_jitter():
    pipe = AUG.build("cpc", dict(size=16, mean=[0.0], std=[1.0], patch=8, overlap=4))
    assert pipe.grid_shape() == (3, 3)
    image = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16) / 255
    plain = type(pipe)(views=pipe.views, patch=8, overlap=4)  # no per-patch augmentation
    patches = plain._patchify(image, None)
    assert patches.shape == (1, 3, 3, 1, 8, 8)
    # neighbouring patches share `overlap` columns / rows
    assert torch.equal(patches[0, 0, 0, :, :, 4:], patches[0, 0, 1, :, :, :4])
    assert torch.equal(patches[0, 0, 0, :, 4:, :], patches[0, 1, 0, :, :4, :])
    assert torch.equal(patches[0, 2, 2, 0], image[0, 0, 8:16, 8:16])


@pytest.mark.parametrize("patch,overlap", [(6, 2), (8, 8), (40, 0)])
def test_cpc_patch_that_does_not_tile_is_rejected(patch, overlap):
    with pytest.raises(ZooError, match="patch"):
        AUG.build("cpc", dict(size=32, mean=[0.5], std=[0.5], patch=patch, overlap=overlap))


def test_crop_boxes_lie_inside_and_respect_scale():
    g = torch.Generator().manual_seed(0)
    boxes = ops.sample_crop_boxes(2000, 28, 28, (0.2, 0.6), (3 / 4, 4 / 3), g)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 28 + 1e-4).all() and (left + w <= 28 + 1e-4).all()
    area = h * w / (28 * 28)
    assert area.min() >= 0.2 - 1e-4 and area.max() <= 0.6 + 1e-4
    ratio = w / h
    assert ratio.min() >= 3 / 4 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4


def test_full_box_without_flip_is_identity():
    x = torch.rand(3, 1, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]]).expand(3, 4)
    assert torch.allclose(ops.resized_crop(x, boxes, (8, 8)), x, atol=1e-6)
    flipped = ops.resized_crop(x, boxes, (8, 8), flip=torch.tensor([True, False, True]))
    assert torch.allclose(flipped[0], x[0].flip(-1), atol=1e-6)
    assert torch.allclose(flipped[1], x[1], atol=1e-6)


def test_colour_ops_match_their_formulas():
    x = torch.rand(4, 3, 5, 5)
    factor = torch.tensor([0.5, 1.0, 1.5, 0.0])
    assert torch.allclose(ops.adjust_brightness(x, factor), (x * factor.view(-1, 1, 1, 1)).clamp(0, 1))
    grey = ops.grayscale(x)
    assert torch.allclose(grey[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    assert torch.allclose(ops.adjust_hue(x, torch.zeros(4)), x, atol=1e-5)
    assert torch.allclose(ops.adjust_hue(x, torch.full((4,), 1.0)), x, atol=1e-5)
    solar = ops.solarize(x, torch.tensor([True, False, True, False]))
    assert torch.equal(solar[1], x[1]) and torch.allclose(solar[0], torch.where(x[0] >= 0.5, 1 - x[0], x[0]))


def test_eval_transform_resizes_and_normalises():
    pipe = AUG.build("yadim", dict(size=32, mean=[0.5], std=[0.5]))
    out = pipe.eval_transform(torch.full((2, 1, 28, 28), 255, dtype=torch.uint8))
    assert out.shape == (2, 1, 32, 32) and torch.allclose(out, torch.ones_like(out))


def test_swav_multicrop_sizes_and_byol_asymmetry():
    pipe = AUG.build("swav", dict(size=24, small_size=12, mean=[0.5], std=[0.25], n_small=3))
    views = pipe(batch())
    assert [tuple(v.shape[2:]) for v in views] == [(24, 24)] * 2 + [(12, 12)] * 3
    byol = AUG.build("byol", dict(size=16, mean=[0.5], std=[0.25]))
    assert [v.blur_prob for v in byol.views] == [1.0, 0.1]
    assert [v.solarize_prob for v in byol.views] == [0.0, 0.2]
