"""Batched image operations used by the augmentation pipelines, on whatever device the batch lives on.

Every random choice is drawn per sample from one ``torch.Generator`` (on the CPU, so the same seed gives the
same views on any device), then applied to the whole batch at once: crops and flips become one affine
``grid_sample``, colour jitter is arithmetic on (B, C, H, W), blur is a grouped convolution. This replaces the
per-sample PIL loop of the original implementations while sampling the same distributions.
Images are float tensors in [0, 1]; normalisation happens last, in the pipeline.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

Generator = Optional[torch.Generator]


def uniform(n: int, low: float, high: float, generator: Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def bernoulli(n: int, p: float, generator: Generator) -> Tensor:
    """Boolean mask (n,) with P(True) = p; always drawn so that the random stream does not depend on p."""
    return torch.rand(n, generator=generator) < p


def sample_crop_boxes(n: int, height: int, width: int, scale: Tuple[float, ...], ratio: Tuple[float, float],
                      generator: Generator, tries: int = 10) -> Tensor:
    """Crop boxes (n, 4) as (top, left, h, w) in pixels, by RandomResizedCrop's rule.

    As in torchvision: draw an area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``, keep the
    first of ``tries`` draws that fits, else fall back to the largest centred box with a clamped ratio. Boxes are
    continuous (not rounded to whole pixels), which the bilinear resampling handles exactly.
    """
    area = height * width
    target = area * uniform(n * tries, scale[0], scale[1], generator).view(n, tries)
    log_r = uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, tries)
    aspect = torch.exp(log_r)
    w = torch.sqrt(target * aspect)
    h = torch.sqrt(target / aspect)
    fits = (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    pos = torch.rand(n, 2, generator=generator)
    rows = torch.arange(n)
    pick = first.clamp(min=0)
    h_sel, w_sel = h[rows, pick], w[rows, pick]
    # fallback: whole image, aspect clamped into ratio (centred)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    ok = first >= 0
    h_sel = torch.where(ok, h_sel, torch.full_like(h_sel, fh))
    w_sel = torch.where(ok, w_sel, torch.full_like(w_sel, fw))
    top = torch.where(ok, pos[:, 0] * (height - h_sel), (height - h_sel) / 2)
    left = torch.where(ok, pos[:, 1] * (width - w_sel), (width - w_sel) / 2)
    return torch.stack([top, left, h_sel, w_sel], dim=1)


def resized_crop(images: Tensor, boxes: Tensor, size: Tuple[int, int], flip: Optional[Tensor] = None,
                 shift: Optional[Tensor] = None) -> Tensor:
    """Crop each image to its box (top, left, h, w), optionally flip it and shift it, resize to ``size``.

    One affine ``grid_sample`` does it all. ``shift`` (n, 2) in pixels of the source moves the box, with
    reflection at the borders (CPC's "random translate with reflect").
    """
    n, _, height, width = images.shape
    boxes = boxes.to(images.device, torch.float32)
    top, left, h, w = boxes.unbind(1)
    if shift is not None:
        shift = shift.to(images.device, torch.float32)
        top, left = top + shift[:, 0], left + shift[:, 1]
    sx, sy = w / width, h / height
    cx = (left + w / 2) / width * 2 - 1
    cy = (top + h / 2) / height * 2 - 1
    if flip is not None:
        sx = torch.where(flip.to(images.device), -sx, sx)
    theta = torch.zeros(n, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    grid = F.affine_grid(theta, [n, images.shape[1], size[0], size[1]], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def grayscale(images: Tensor) -> Tensor:
    """ITU-R 601-2 luma, as torchvision; (B, 1, H, W) for any channel count."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(a: Tensor, b: Tensor, factor: Tensor) -> Tensor:
    f = factor.view(-1, 1, 1, 1).to(a)
    return (f * a + (1 - f) * b).clamp_(0, 1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean.expand_as(x), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    return _blend(x, grayscale(x).expand_as(x), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by ``shift`` (fraction of a turn, in [-0.5, 0.5]) through an HSV round trip."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    h = (h + shift.view(-1, 1, 1).to(h)) % 1.0
    v = maxc
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    choices_r = torch.stack([v, q, p, p, t, v], 1)
    choices_g = torch.stack([t, v, v, q, p, p], 1)
    choices_b = torch.stack([p, p, t, v, v, q], 1)
    idx = i.unsqueeze(1)
    return torch.cat([c.gather(1, idx) for c in (choices_r, choices_g, choices_b)], 1)


def color_jitter(x: Tensor, strength: Sequence[float], apply: Tensor, generator: Generator) -> Tensor:
    """ColorJitter(brightness, contrast, saturation, hue) on the samples where ``apply`` is True.

    As torchvision's ColorJitter (which SimCLR, MoCo, SwAV and BYOL use) does for each image, the factors are drawn
    per sample (uniform in [1-s, 1+s], hue in [-h, h]) and the four adjustments run in a random order, drawn per
    sample uniformly over the 24 permutations. The batch is processed stage by stage: at stage k each adjustment
    runs on the samples whose k-th adjustment it is.
    """
    n = x.shape[0]
    b, c, s, h = strength
    fb = uniform(n, max(0.0, 1 - b), 1 + b, generator)
    fc = uniform(n, max(0.0, 1 - c), 1 + c, generator)
    fs = uniform(n, max(0.0, 1 - s), 1 + s, generator)
    fh = uniform(n, -h, h, generator)
    # argsort of i.i.d. uniforms: every permutation of (brightness, contrast, saturation, hue) equally likely
    order = torch.rand(n, 4, generator=generator).argsort(dim=1)
    if not bool(apply.any()):
        return x
    steps: List[Tuple[Callable[[Tensor, Tensor], Tensor], Tensor]] = [(adjust_brightness, fb), (adjust_contrast, fc)]
    if x.shape[1] > 1:  # saturation and hue leave one-channel images as they are
        steps += [(adjust_saturation, fs)] + ([(adjust_hue, fh)] if h > 0 else [])
    apply = apply.cpu()
    y = x.clone()
    for stage in range(4):
        for which, (adjust, factor) in enumerate(steps):
            chosen = ((order[:, stage] == which) & apply).nonzero().squeeze(1)
            if chosen.numel():
                index = chosen.to(x.device)
                y[index] = adjust(y[index], factor[chosen])
    return y


def random_grayscale(x: Tensor, apply: Tensor) -> Tensor:
    if x.shape[1] == 1 or not bool(apply.any()):
        return x
    return torch.where(apply.to(x.device).view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)


def blur_kernel_size(side: int, sigma_max: float) -> int:
    """Odd kernel width for a Gaussian blur of sigma up to ``sigma_max`` pixels on images ``side`` pixels wide.

    SimCLR: "we blur the image 50% of the time using a Gaussian kernel. We randomly sample σ ∈ [0.1, 2.0], and the
    kernel size is set to be 10% of the image height/width"; BYOL's 23 x 23 kernel at 224. At 224 that kernel spans
    more than 5σ either side, a Gaussian in all but name; on small images 10% would truncate it (3 taps at 32
    pixels, where σ = 2 becomes a near-box filter). The width is therefore at least ±3σ (2⌈3σ⌉ + 1), never
    narrower than the papers' 10%, and under twice the image side (reflect padding needs pad < side).
    """
    width = max(3, int(0.1 * side) | 1, 2 * math.ceil(3 * sigma_max) + 1)
    return min(width, 2 * side - 1)


def gaussian_blur(x: Tensor, sigma: Tensor, apply: Tensor, kernel_size: int) -> Tensor:
    """Per-sample Gaussian blur (separable, reflect padding) where ``apply`` is True."""
    if not bool(apply.any()):
        return x
    n, c, hgt, wid = x.shape
    k = kernel_size | 1
    half = k // 2
    coords = torch.arange(k, dtype=torch.float32) - half
    kern = torch.exp(-coords.view(1, -1) ** 2 / (2 * sigma.view(-1, 1) ** 2))
    kern = (kern / kern.sum(1, keepdim=True)).to(x.device, x.dtype)
    kern = kern.repeat_interleave(c, 0)  # (n*c, k)
    y = x.reshape(1, n * c, hgt, wid)
    y = F.conv2d(F.pad(y, (half, half, 0, 0), mode="reflect"), kern.view(n * c, 1, 1, k), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, half, half), mode="reflect"), kern.view(n * c, 1, k, 1), groups=n * c)
    return torch.where(apply.to(x.device).view(-1, 1, 1, 1), y.view(n, c, hgt, wid), x)


def solarize(x: Tensor, apply: Tensor, threshold: float = 0.5) -> Tensor:
    if not bool(apply.any()):
        return x
    return torch.where(apply.to(x.device).view(-1, 1, 1, 1) & (x >= threshold), 1 - x, x)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def patch_grid(x: Tensor, patch: int, overlap: int) -> Tensor:
    """(B, C, H, W) -> overlapping patches (B, rows, cols, C, patch, patch) with stride ``patch - overlap``."""
    stride = patch - overlap
    return x.unfold(2, patch, stride).unfold(3, patch, stride).permute(0, 2, 3, 1, 4, 5).contiguous()


def drop_colour_channels(x: Tensor, fill: Sequence[float], generator: Generator, noise: float = 0.01) -> Tensor:
    """Colour dropping (Doersch et al. 2015, adopted by CPC v2): keep one channel per image, drawn uniformly, and
    replace every other channel with its ``fill`` value (the dataset mean, so 0 once normalised) plus Gaussian noise
    whose standard deviation is ``noise`` times that of the kept channel in the same image (Doersch et al. replace
    "the dropped colors with Gaussian noise (standard deviation ~1/100 the standard deviation of the remaining
    channel)"). Draws happen on the CPU generator whatever the device, as everywhere in this module."""
    n, c = x.shape[:2]
    keep = torch.randint(0, c, (n,), generator=generator)
    jitter = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    keep = keep.to(x.device)
    kept = x.gather(1, keep.view(n, 1, 1, 1).expand(n, 1, *x.shape[2:]))
    spread = kept.flatten(1).std(dim=1, unbiased=False).view(n, 1, 1, 1)
    base = torch.as_tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    dropped = base + noise * spread * jitter
    is_kept = F.one_hot(keep, c).to(torch.bool).view(n, c, 1, 1)
    return torch.where(is_kept, x, dropped)
