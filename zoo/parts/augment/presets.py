"""The whole-image augmentation presets of the methods, registered by name in ``AUGMENTATIONS``; each quotes
the paper it follows. Dataset knowledge (output size, mean/std, channels) is passed in by the recipe."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from zoo.errors import ZooError
from zoo.parts.augment.pipeline import AUGMENTATIONS, ViewPipeline, ViewTransform, crop_scale_of
from zoo.parts.augment.pipeline import common_view_args as view_args


@AUGMENTATIONS.register("simclr")
def simclr_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                 channels: Optional[int] = None, n_views: int = 2, strength: float = 1.0,
                 crop_scale: Sequence[float] = (0.08, 1.0), jitter_prob: float = 0.8, gray_prob: float = 0.2,
                 blur_prob: float = 0.5, flip_prob: float = 0.5) -> ViewPipeline:
    """SimCLR (arXiv:2002.05709): "random cropping followed by resize back to the original size, random color
    distortions, and random Gaussian blur"; jitter (0.8s, 0.8s, 0.8s, 0.2s) with p 0.8, grayscale p 0.2.
    Use ``blur_prob=0`` for CIFAR-sized images as the paper does."""
    s = strength
    view = ViewTransform(**view_args(size, mean, std), crop_scale=crop_scale_of(crop_scale),
                         jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), jitter_prob=jitter_prob,
                         gray_prob=gray_prob, blur_prob=blur_prob, flip_prob=flip_prob)
    return ViewPipeline(views=(view,) * n_views, channels=channels)


@AUGMENTATIONS.register("moco_v2")
def moco_v2_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                  channels: Optional[int] = None, crop_scale: Sequence[float] = (0.2, 1.0),
                  blur_prob: float = 0.5) -> ViewPipeline:
    """MoCo v2 (arXiv:2003.04297): SimCLR's augmentation with blur: crop 0.2-1, colour jitter
    (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, Gaussian blur (sigma 0.1-2) p 0.5, flip."""
    view = ViewTransform(**view_args(size, mean, std), crop_scale=crop_scale_of(crop_scale), jitter=(0.4, 0.4, 0.4, 0.1),
                         jitter_prob=0.8, gray_prob=0.2, blur_prob=blur_prob)
    return ViewPipeline(views=(view, view), channels=channels)


@AUGMENTATIONS.register("byol")
def byol_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
               channels: Optional[int] = None, crop_scale: Sequence[float] = (0.08, 1.0),
               blur_probs: Sequence[float] = (1.0, 0.1), solarize_probs: Sequence[float] = (0.0, 0.2)) -> ViewPipeline:
    """BYOL (arXiv:2006.07733), asymmetric: both views crop, flip, jitter (0.4, 0.4, 0.2, 0.1) p 0.8,
    grayscale p 0.2; view 1 blurs with p 1.0 and never solarises, view 2 blurs with p 0.1, solarises with p 0.2."""
    common: Dict[str, Any] = dict(**view_args(size, mean, std), crop_scale=crop_scale_of(crop_scale),
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
    large = ViewTransform(**view_args(size, mean, std), crop_scale=crop_scale_of(large_scale), **common)
    small = ViewTransform(**view_args(small_size, mean, std), crop_scale=crop_scale_of(small_scale), **common)
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
    view = ViewTransform(**view_args(size, mean, std), crop_scale=crop_scale_of(crop_scale),
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
    view = ViewTransform(**view_args(size, mean, std), crop_scale=crop_scale_of(crop_scale), crop_ratio=(0.7, 1.4),
                         translate_px=translate_px, translate_prob=0.8, jitter=(0.4, 0.4, 0.4, 0.2),
                         jitter_prob=0.8, gray_prob=0.25)
    return ViewPipeline(views=(view,) * n_views, channels=channels)

