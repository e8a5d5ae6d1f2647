"""The ``cpc`` augmentation preset: an overlapping patch grid with every patch augmented on its own (CPC v2).

Apart from the whole-image presets (``presets.py``) because its per-patch colour options and their quotes from
the paper would crowd that file.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from zoo.errors import ZooError
from zoo.parts.augment.pipeline import (
    AUGMENTATIONS,
    ViewPipeline,
    ViewTransform,
    check_patch,
    common_view_args,
    crop_scale_of,
)


@AUGMENTATIONS.register("cpc")
def cpc_views(*, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float], patch: int,
              overlap: int, channels: Optional[int] = None, n_views: int = 1,
              crop_scale: Optional[Sequence[float]] = None, patch_colour: str = "jitter") -> ViewPipeline:
    """CPC v2 (arXiv:1905.09272): the image is flipped and translated, then "split into an overlapping grid of
    patches" and each patch is augmented on its own. Views have shape (B, rows, cols, C, patch, patch).

    ``patch_colour`` picks the per-patch colour change:

    - ``"drop"``: the paper's "'color dropping' method of Doersch et al. (2015), which randomly drops two of the
      three color channels in each patch" (section 4.1, "Patch-based augmentation"); three channels only;
    - ``"jitter"``: colour jitter 0.4/0.4/0.4/0.2 with p 0.8 and grayscale with p 0.25 per patch, as pl_bolts and
      Falcon & Cho's CPC pipeline do (on one channel only brightness and contrast change);
    - ``"none"``: no per-patch change.

    The paper's further per-patch augmentations ("primitives from Cubuk et al. (2018) (e.g. shearing, rotation,
    etc), as well as random elastic deformations and color transforms") are not implemented.
    """
    check_patch(size, patch, overlap)
    common = common_view_args(size, mean, std)
    image = ViewTransform(**common, crop_scale=crop_scale_of(crop_scale), translate_px=4,
                          translate_prob=0.8)
    patch_common: Dict[str, Any] = dict(**{**common, "size": (patch, patch)}, crop_scale=None, flip_prob=0.0)
    if patch_colour == "jitter":
        per_patch: Optional[ViewTransform] = ViewTransform(**patch_common, jitter=(0.4, 0.4, 0.4, 0.2),
                                                           jitter_prob=0.8, gray_prob=0.25)
    elif patch_colour == "drop":
        if len(common["mean"]) != 3:
            raise ZooError(f"patch_colour='drop' keeps one of three colour channels; these images have "
                           f"{len(common['mean'])} channel(s): use patch_colour='jitter' or 'none'")
        per_patch = ViewTransform(**patch_common, colour_drop=True)
    elif patch_colour == "none":
        per_patch = None
    else:
        raise ZooError(f"cpc patch_colour must be 'drop', 'jitter' or 'none', got {patch_colour!r}")
    return ViewPipeline(views=(image,) * n_views, channels=channels, patch=patch, overlap=overlap,
                        patch_view=per_patch)
