"""The batched augmentation draws what the per-sample reference draws: same seeds -> same crop boxes and jitter
factors (a per-sample loop written the way torchvision writes it, fed the same random stream), and the same
distributions as torchvision's own RandomResizedCrop and ColorJitter."""

import math

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from zoo.parts.augment import ops


def reference_crop_boxes(n, height, width, scale, ratio, generator, tries=10):
    """torchvision's RandomResizedCrop.get_params, one sample at a time, reading the same random numbers in the
    order the batched sampler draws them (all areas, all ratios, then positions)."""
    area = height * width
    fractions = ops.uniform(n * tries, scale[0], scale[1], generator).view(n, tries)
    log_ratios = ops.uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, tries)
    positions = torch.rand(n, 2, generator=generator)
    boxes = []
    for k in range(n):
        for t in range(tries):
            target, aspect = area * fractions[k, t], math.exp(log_ratios[k, t])
            w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
            if 0 < w <= width and 0 < h <= height:
                boxes.append([positions[k, 0] * (height - h), positions[k, 1] * (width - w), h, w])
                break
        else:  # fallback: the whole image with the ratio clamped, centred
            in_ratio = width / height
            if in_ratio < ratio[0]:
                w, h = width, width / ratio[0]
            elif in_ratio > ratio[1]:
                w, h = height * ratio[1], height
            else:
                w, h = width, height
            boxes.append([(height - h) / 2, (width - w) / 2, h, w])
    return torch.tensor(boxes, dtype=torch.float32)


def test_same_seed_gives_the_same_crop_boxes_as_the_per_sample_reference():
    for height, width, scale, ratio in [(28, 28, (0.08, 1.0), (3 / 4, 4 / 3)), (32, 64, (0.5, 1.0), (0.2, 5.0)),
                                        (40, 20, (0.9, 1.0), (3.0, 4.0))]:  # the last one often falls back
        batched = ops.sample_crop_boxes(500, height, width, scale, ratio, torch.Generator().manual_seed(7))
        reference = reference_crop_boxes(500, height, width, scale, ratio, torch.Generator().manual_seed(7))
        assert torch.allclose(batched, reference, atol=1e-4)


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic."""
    values = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, values, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, values, right=True) / len(b)
    return (cdf_a - cdf_b).abs().max().item()


def test_crop_boxes_follow_torchvisions_distribution():
    n, size = 20000, 1000  # a large image, so torchvision's rounding to whole pixels does not matter
    ours = ops.sample_crop_boxes(n, size, size, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    image = torch.zeros(1, size, size)
    theirs = torch.tensor([T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)],
                          dtype=torch.float32)  # (top, left, h, w)
    area = lambda b: b[:, 2] * b[:, 3] / size ** 2  # noqa: E731
    aspect = lambda b: torch.log(b[:, 3] / b[:, 2])  # noqa: E731
    # the KS statistic of two samples of 20000 from one distribution exceeds 0.0195 with probability 0.1%
    assert ks_statistic(area(ours), area(theirs)) < 0.0195
    assert ks_statistic(aspect(ours), aspect(theirs)) < 0.0195
    top = lambda b: b[:, 0] / (size - b[:, 2]).clamp_min(1)  # noqa: E731  (position within the free space)
    assert ks_statistic(top(ours), top(theirs)) < 0.0195


TORCHVISION_ADJUSTMENTS = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]


def test_colour_jitter_applies_torchvisions_ops_with_the_same_factors_and_order_per_sample():
    images = torch.rand(16, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    strength = (0.4, 0.4, 0.4, 0.1)
    apply = torch.arange(16) % 3 != 0
    batched = ops.color_jitter(images, strength, apply, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the factors, drawn as ColorJitter.get_params ranges them, then the order
    factors = [ops.uniform(16, 1 - s, 1 + s, g) for s in strength[:3]] + [ops.uniform(16, -0.1, 0.1, g)]
    orders = torch.rand(16, 4, generator=g).argsort(dim=1)
    for k in range(16):
        expected = images[k]
        if apply[k]:
            for which in orders[k].tolist():
                expected = TORCHVISION_ADJUSTMENTS[which](expected, factors[which][k].item())
        assert torch.allclose(batched[k], expected, atol=2e-3), f"sample {k}"


def test_colour_jitter_order_is_uniform_over_permutations_like_torchvisions():
    """Each image's order is recovered from its output. Brightness and contrast commute up to the clip to [0, 1],
    so on bright images (which brightening clips) exactly one of torchvision's two compositions,
    brightness-then-contrast or contrast-then-brightness, reproduces the sample. torchvision's ColorJitter
    draws a random order per image, so each comes first half of the time (a fixed order gives 0 or 1)."""
    n = 4000
    images = 0.4 + 0.6 * torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    out = ops.color_jitter(images, (0.5, 0.5, 0.0, 0.0), torch.ones(n, dtype=torch.bool),
                           torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    fb, fc = ops.uniform(n, 0.5, 1.5, g), ops.uniform(n, 0.5, 1.5, g)
    brightness_first = distinguishable = 0
    for k in range(n):
        bc = TF.adjust_contrast(TF.adjust_brightness(images[k], fb[k].item()), fc[k].item())
        cb = TF.adjust_brightness(TF.adjust_contrast(images[k], fc[k].item()), fb[k].item())
        is_bc, is_cb = torch.allclose(out[k], bc, atol=1e-5), torch.allclose(out[k], cb, atol=1e-5)
        assert is_bc or is_cb, f"sample {k} matches neither order"
        if (bc - cb).abs().max() > 1e-3:  # the two orders differ visibly for this sample
            distinguishable += 1
            brightness_first += int(is_bc)
    assert distinguishable > n // 4
    # a fair coin over the distinguishable samples: 0.5 +- 4 standard deviations
    assert abs(brightness_first / distinguishable - 0.5) < 4 * (0.25 / distinguishable) ** 0.5
