"""Characteristic (1): data augmentation pipelines.

"A data augmentation pipeline A(x) applies a sequence of stochastic transformations to the same input" and,
in contrastive learning, has "a secondary goal which is to generate the anchor, positive and negative
examples" (Falcon & Cho, arXiv:2009.00104). A pipeline here maps a batch of images (uint8 or [0, 1] floats,
(B, C, H, W)) to a list of views; every view of every sample is drawn independently, on the batch's device.

Presets are registered by name and take explicit keyword arguments. Dataset knowledge (output size, mean/std,
channel count) is not part of a preset: the recipe passes it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from zoo.errors import ZooError
from zoo.part_registry import PartRegistry
from zoo.parts import augment_ops as ops
from zoo.parts.augment_ops import patch_grid

AUGMENTATIONS: PartRegistry["ViewPipeline"] = PartRegistry("augmentation")


def _pair(size: int | Sequence[int]) -> Tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    if len(size) != 2:
        raise ZooError(f"size must be an int or (height, width), got {size!r}")
    return (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class ViewTransform:
    """One stochastic view: crop/flip/translate, colour jitter, grayscale, blur, solarise, normalise."""

    size: Tuple[int, int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    crop_scale: Optional[Tuple[float, ...]] = (0.08, 1.0)  # None: keep the whole image
    crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    translate_px: int = 0
    translate_prob: float = 0.0
    jitter: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    jitter_prob: float = 0.0
    gray_prob: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: Tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    colour_drop: bool = False  # keep one channel per image, drop the others (CPC v2's per-patch "color dropping")

    def __call__(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        x = to_unit_float(images)
        n, _, height, width = x.shape
        if self.crop_scale is None:
            boxes = torch.tensor([[0.0, 0.0, float(height), float(width)]]).expand(n, 4)
        else:
            boxes = ops.sample_crop_boxes(n, height, width, self.crop_scale, self.crop_ratio, generator)
        flip = ops.bernoulli(n, self.flip_prob, generator)
        shift = (torch.randint(-self.translate_px, self.translate_px + 1, (n, 2), generator=generator).float()
                 * ops.bernoulli(n, self.translate_prob, generator).unsqueeze(1))
        x = ops.resized_crop(x, boxes, self.size, flip=flip, shift=shift if self.translate_px else None)
        x = ops.color_jitter(x, self.jitter, ops.bernoulli(n, self.jitter_prob, generator), generator)
        x = ops.random_grayscale(x, ops.bernoulli(n, self.gray_prob, generator))
        sigma = ops.uniform(n, self.blur_sigma[0], self.blur_sigma[1], generator)
        kernel = ops.blur_kernel_size(min(self.size), self.blur_sigma[1])
        x = ops.gaussian_blur(x, sigma, ops.bernoulli(n, self.blur_prob, generator), kernel)
        x = ops.solarize(x, ops.bernoulli(n, self.solarize_prob, generator))
        if self.colour_drop:
            x = ops.drop_colour_channels(x, self.mean, generator)
        return ops.normalize(x, self.mean, self.std)


@dataclass(frozen=True)
class ViewPipeline:
    """A list of view transforms (one per view, so pipelines can be asymmetric) plus optional patch grid.

    ``channels`` converts single-channel input to that many channels (grey to RGB) before anything else.
    With ``patch`` set, each view is cut into an overlapping grid of ``patch``-pixel patches with stride
    ``patch - overlap`` and every patch is augmented on its own (CPC); views then have shape
    (B, rows, cols, C, patch, patch).
    """

    views: Tuple[ViewTransform, ...]
    channels: Optional[int] = None
    patch: Optional[int] = None
    overlap: int = 0
    patch_view: Optional[ViewTransform] = field(default=None)

    @property
    def size(self) -> Tuple[int, int]:
        return self.views[0].size

    @property
    def mean(self) -> Tuple[float, ...]:
        return self.views[0].mean

    @property
    def std(self) -> Tuple[float, ...]:
        return self.views[0].std

    def __call__(self, images: Tensor, generator: Optional[torch.Generator] = None) -> List[Tensor]:
        images = self._check(images)
        out = []
        for view in self.views:
            x = view(images, generator)
            if self.patch is not None:
                x = self._patchify(x, generator)
            out.append(x)
        return out

    def eval_transform(self, images: Tensor) -> Tensor:
        """Deterministic preprocessing for evaluation: resize the whole image to ``size`` and normalise; with a
        patch grid, cut it into the same grid without per-patch augmentation, (B, rows, cols, C, p, p)."""
        return eval_preprocess(self._check(images), self.size, self.mean, self.std, patch=self.patch,
                               overlap=self.overlap)

    def grid_shape(self) -> Tuple[int, int]:
        if self.patch is None:
            raise ZooError("this pipeline has no patch grid")
        stride = self.patch - self.overlap
        return ((self.size[0] - self.patch) // stride + 1, (self.size[1] - self.patch) // stride + 1)

    def _check(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ZooError(f"augmentation expects a batch (B, C, H, W), got {shape}")
        c = images.shape[1]
        if self.channels is not None and c != self.channels:
            if c == 1:
                images = images.expand(-1, self.channels, -1, -1)
            else:
                raise ZooError(f"augmentation expects {self.channels} channels (or 1 to replicate), got {c}")
        if images.shape[1] != len(self.mean):
            raise ZooError(f"images have {images.shape[1]} channels but mean/std have {len(self.mean)} entries; "
                           "set channels/mean/std in the recipe for this dataset")
        return images

    def _patchify(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        n, c = x.shape[:2]
        assert self.patch is not None, "only patch-grid pipelines patchify"
        patches = patch_grid(x, self.patch, self.overlap)
        rows, cols = patches.shape[1:3]
        patches = patches.reshape(n * rows * cols, c, self.patch, self.patch)
        if self.patch_view is not None:
            # undo normalisation, augment each patch on its own, normalise again
            m = torch.as_tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            s = torch.as_tensor(self.std, device=x.device).view(1, -1, 1, 1)
            patches = self.patch_view((patches * s + m).clamp(0, 1), generator)
        return patches.reshape(n, rows, cols, c, self.patch, self.patch)


def eval_preprocess(images: Tensor, size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                    channels: Optional[int] = None, patch: Optional[int] = None, overlap: int = 0) -> Tensor:
    """uint8 or [0, 1] batch -> channels matched (grey replicated, RGB to luma) -> whole image resized to ``size``
    (bilinear, antialiased) -> normalised
    (-> cut into a patch grid when ``patch`` is given: encoders pool their features over the grid)."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ZooError(f"expected a batch (B, C, H, W), got {tuple(getattr(images, 'shape', ())) or type(images)}")
    x = to_unit_float(images)
    if channels is not None and x.shape[1] != channels:
        if x.shape[1] == 1:  # grey images for a colour encoder: replicate
            x = x.expand(-1, channels, -1, -1)
        elif x.shape[1] == 3 and channels == 1:  # colour images for a grey encoder: luma, as PIL's "L" mode
            x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            raise ZooError(f"the encoder takes {channels} channel(s); images with {x.shape[1]} cannot be converted "
                           f"(1 <-> 3 channels can)")
    if tuple(x.shape[2:]) != tuple(size):
        x = torch.nn.functional.interpolate(x, size=_pair(tuple(size)), mode="bilinear", align_corners=False,
                                            antialias=True)
    x = ops.normalize(x, mean, std)
    return x if patch is None else patch_grid(x, patch, overlap)


def to_unit_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise ZooError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    return images.float()


def _common(size: int | Sequence[int], mean: Sequence[float], std: Sequence[float]) -> Dict[str, Any]:
    if not mean or not std or len(mean) != len(std):
        raise ZooError(f"mean and std must be non-empty lists of equal length, got {mean!r} and {std!r}")
    return dict(size=_pair(size), mean=tuple(map(float, mean)), std=tuple(map(float, std)))


def crop_scale_of(scale: Optional[Sequence[float]]) -> Optional[Tuple[float, ...]]:
    """A recipe's crop scale as ``ViewTransform`` takes it: (lo, hi), or None (null) for the whole image. Its range
    is checked before the part is built (``zoo.values.CROP_SCALE``)."""
    return None if scale is None else tuple(float(s) for s in scale)


def _check_patch(size: int | Sequence[int], patch: int, overlap: int) -> None:
    h, w = _pair(size)
    stride = patch - overlap
    if patch <= 0 or overlap < 0 or stride <= 0:
        raise ZooError(f"patch grid needs patch > overlap >= 0, got patch={patch}, overlap={overlap}")
    if (h - patch) % stride or (w - patch) % stride or patch > min(h, w):
        raise ZooError(f"patch {patch} with overlap {overlap} (stride {stride}) does not tile a {h}x{w} image; "
                       f"(size - patch) must be a multiple of the stride")


@AUGMENTATIONS.register("simclr")
def simclr_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                 channels: Optional[int] = None, n_views: int = 2, strength: float = 1.0,
                 crop_scale: Sequence[float] = (0.08, 1.0), jitter_prob: float = 0.8, gray_prob: float = 0.2,
                 blur_prob: float = 0.5, flip_prob: float = 0.5) -> ViewPipeline:
    """SimCLR (arXiv:2002.05709): "random cropping followed by resize back to the original size, random color
    distortions, and random Gaussian blur"; jitter (0.8s, 0.8s, 0.8s, 0.2s) with p 0.8, grayscale p 0.2.
    Use ``blur_prob=0`` for CIFAR-sized images as the paper does."""
    s = strength
    view = ViewTransform(**_common(size, mean, std), crop_scale=crop_scale_of(crop_scale),
                         jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), jitter_prob=jitter_prob,
                         gray_prob=gray_prob, blur_prob=blur_prob, flip_prob=flip_prob)
    return ViewPipeline(views=(view,) * n_views, channels=channels)


@AUGMENTATIONS.register("moco_v2")
def moco_v2_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                  channels: Optional[int] = None, crop_scale: Sequence[float] = (0.2, 1.0),
                  blur_prob: float = 0.5) -> ViewPipeline:
    """MoCo v2 (arXiv:2003.04297): SimCLR's augmentation with blur: crop 0.2-1, colour jitter
    (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, Gaussian blur (sigma 0.1-2) p 0.5, flip."""
    view = ViewTransform(**_common(size, mean, std), crop_scale=crop_scale_of(crop_scale), jitter=(0.4, 0.4, 0.4, 0.1),
                         jitter_prob=0.8, gray_prob=0.2, blur_prob=blur_prob)
    return ViewPipeline(views=(view, view), channels=channels)


@AUGMENTATIONS.register("byol")
def byol_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
               channels: Optional[int] = None, crop_scale: Sequence[float] = (0.08, 1.0),
               blur_probs: Sequence[float] = (1.0, 0.1), solarize_probs: Sequence[float] = (0.0, 0.2)) -> ViewPipeline:
    """BYOL (arXiv:2006.07733), asymmetric: both views crop, flip, jitter (0.4, 0.4, 0.2, 0.1) p 0.8,
    grayscale p 0.2; view 1 blurs with p 1.0 and never solarises, view 2 blurs with p 0.1, solarises with p 0.2."""
    common: Dict[str, Any] = dict(**_common(size, mean, std), crop_scale=crop_scale_of(crop_scale),
                                  jitter=(0.4, 0.4, 0.2, 0.1), jitter_prob=0.8, gray_prob=0.2)
    if len(blur_probs) != len(solarize_probs):
        raise ZooError(f"byol needs one blur and one solarize probability per view, got {blur_probs}, {solarize_probs}")
    views = tuple(ViewTransform(**common, blur_prob=b, solarize_prob=s)
                  for b, s in zip(blur_probs, solarize_probs, strict=True))
    return ViewPipeline(views=views, channels=channels)


@AUGMENTATIONS.register("swav")
def swav_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
               small_size: int | Sequence[int], channels: Optional[int] = None, n_large: int = 2, n_small: int = 6,
               large_scale: Sequence[float] = (0.14, 1.0), small_scale: Sequence[float] = (0.05, 0.14),
               strength: float = 1.0, blur_prob: float = 0.5) -> ViewPipeline:
    """SwAV (arXiv:2006.09882) multi-crop: "two standard resolution crops and [...] V additional low resolution
    crops that cover only small parts of the image" (2x224 at scale 0.14-1 + 6x96 at 0.05-0.14 on ImageNet),
    each with SimCLR's colour distortion and blur. Large crops come first in the list of views."""
    s = strength
    common: Dict[str, Any] = dict(jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), jitter_prob=0.8, gray_prob=0.2, blur_prob=blur_prob)
    large = ViewTransform(**_common(size, mean, std), crop_scale=crop_scale_of(large_scale), **common)
    small = ViewTransform(**_common(small_size, mean, std), crop_scale=crop_scale_of(small_scale), **common)
    if n_large < 2 or n_small < 0:
        raise ZooError(f"swav multi-crop needs n_large >= 2 and n_small >= 0, got {n_large}, {n_small}")
    return ViewPipeline(views=(large,) * n_large + (small,) * n_small, channels=channels)


@AUGMENTATIONS.register("amdim")
def amdim_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                channels: Optional[int] = None, crop_scale: Optional[Sequence[float]] = None,
                translate_px: int = 4) -> ViewPipeline:
    """AMDIM (arXiv:1906.00910): the same stochastic pipeline applied twice to each image: random translate
    with reflection (4 px, p 0.8), horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.2) p 0.8, grayscale
    p 0.25; random resized crop (scale 0.3-1, ratio 0.7-1.4) on the larger datasets (``crop_scale``)."""
    view = ViewTransform(**_common(size, mean, std), crop_scale=crop_scale_of(crop_scale),
                         crop_ratio=(0.7, 1.4), translate_px=translate_px, translate_prob=0.8,
                         jitter=(0.4, 0.4, 0.4, 0.2), jitter_prob=0.8, gray_prob=0.25)
    return ViewPipeline(views=(view, view), channels=channels)


@AUGMENTATIONS.register("yadim")
def yadim_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                channels: Optional[int] = None, n_views: int = 2, crop_scale: Sequence[float] = (0.3, 1.0),
                translate_px: int = 4) -> ViewPipeline:
    """YADIM (Falcon & Cho): "For YADIM we merge the pipelines of CPC and AMDIM". The union of both, applied
    to the whole image (YADIM has no patch grid): AMDIM's random resized crop (ratio 0.7-1.4), CPC's and
    AMDIM's translate-with-reflect (p 0.8), flip, colour jitter (0.4, 0.4, 0.4, 0.2) p 0.8, grayscale p 0.25."""
    view = ViewTransform(**_common(size, mean, std), crop_scale=crop_scale_of(crop_scale), crop_ratio=(0.7, 1.4),
                         translate_px=translate_px, translate_prob=0.8, jitter=(0.4, 0.4, 0.4, 0.2),
                         jitter_prob=0.8, gray_prob=0.25)
    return ViewPipeline(views=(view,) * n_views, channels=channels)


# the patch-grid preset lives in its own module; importing it here registers "cpc" with the others
from zoo.parts import augment_cpc  # noqa: E402,F401  (at the end: it needs the names above)
