"""View transforms and pipelines, the augmentation registry, and the evaluation preprocessing every
encoder shares. The registered presets live in ``presets.py`` and ``cpc.py``."""


from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from zoo.errors import ZooError
from zoo.part_registry import PartRegistry
from zoo.parts.augment import ops
from zoo.parts.augment.ops import patch_grid

AUGMENTATIONS: PartRegistry["ViewPipeline"] = PartRegistry("augmentation")


def pair(size: int | Sequence[int]) -> Tuple[int, int]:
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
        x = torch.nn.functional.interpolate(x, size=pair(tuple(size)), mode="bilinear", align_corners=False,
                                            antialias=True)
    x = ops.normalize(x, mean, std)
    return x if patch is None else patch_grid(x, patch, overlap)


def to_unit_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise ZooError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
    return images.float()


def common_view_args(size: int | Sequence[int], mean: Sequence[float], std: Sequence[float]) -> Dict[str, Any]:
    if not mean or not std or len(mean) != len(std):
        raise ZooError(f"mean and std must be non-empty lists of equal length, got {mean!r} and {std!r}")
    return dict(size=pair(size), mean=tuple(map(float, mean)), std=tuple(map(float, std)))


def crop_scale_of(scale: Optional[Sequence[float]]) -> Optional[Tuple[float, ...]]:
    """A recipe's crop scale as ``ViewTransform`` takes it: (lo, hi), or None (null) for the whole image. Its range
    is checked before the part is built (``zoo.values.CROP_SCALE``)."""
    return None if scale is None else tuple(float(s) for s in scale)


def check_patch(size: int | Sequence[int], patch: int, overlap: int) -> None:
    h, w = pair(size)
    stride = patch - overlap
    if patch <= 0 or overlap < 0 or stride <= 0:
        raise ZooError(f"patch grid needs patch > overlap >= 0, got patch={patch}, overlap={overlap}")
    if (h - patch) % stride or (w - patch) % stride or patch > min(h, w):
        raise ZooError(f"patch {patch} with overlap {overlap} (stride {stride}) does not tile a {h}x{w} image; "
                       f"(size - patch) must be a multiple of the stride")
